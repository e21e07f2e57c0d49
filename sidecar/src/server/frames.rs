//! Reading request frames from a peer that may be hostile: the buffer grows
//! as bytes arrive (never to what a length prefix claims), large buffers
//! draw on one budget shared by all connections and are given back after
//! the frame, and a frame once begun must arrive within its deadline.
//!
//! With a ring (hsmbridge_proto::ring: its rules are there) a request may
//! also come through shared memory: it is copied into the same buffer before
//! anything looks at it, and a doorbell on the socket
//! (hsmbridge_proto::frame::DOORBELL) only wakes the thread to look again.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hsmbridge_proto::frame::frame_len;
use hsmbridge_proto::frame::DOORBELL;
use hsmbridge_proto::ring::{Ring, Slot, ON_SOCKET, SLOT};
use hsmbridge_proto::spin::{poll_readable, sleep_until_readable, spin_until, Outcome, Sleep};
use zeroize::Zeroize;

use super::limits::{BASE_BUFFER, MAX_BYTES_IN_FLIGHT};

/// Bytes of request buffers beyond [`BASE_BUFFER`] held by all connections.
#[derive(Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    fn charge(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|total| *total <= MAX_BYTES_IN_FLIGHT)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// What came instead of a frame.
#[derive(Debug)]
pub enum End {
    /// The peer closed the connection between frames.
    Closed,
    /// No byte within the wait: the connection is idle.
    Idle,
    /// A frame began but did not arrive within its deadline.
    Slow,
    /// A length prefix past the frame limit, or the connection failed.
    Broken(io::Error),
}

/// The next request on a connection.
pub enum Next<'a> {
    Frame(&'a [u8]),
    /// The frame would have passed the bytes-in-flight budget: it was read
    /// and dropped, and gets `CKR_HOST_MEMORY`.
    OverBudget,
}

pub struct FrameReader {
    stream: Arc<UnixStream>,
    budget: Arc<InFlight>,
    /// `buf[..filled]` holds received bytes; the first `consumed` of them are
    /// the frame handed out last.
    buf: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// Budget held for `buf` beyond `BASE_BUFFER`.
    charged: usize,
    /// The stream's current read timeout, to set it only when it changes.
    timeout: Option<Duration>,
    /// How to sleep until the next frame begins.
    sleep: Sleep,
    /// The ring, once one is attached.
    ring: Option<Ring>,
    /// The ring's `req_seq` as of the last request taken (from either channel).
    last_seq: u32,
    /// The frame handed out last came from the ring.
    from_ring: bool,
}

/// A request copied from the ring fits in the buffer every connection has.
const _: () = assert!(SLOT <= BASE_BUFFER);

/// Where the next request is, once one is announced.
enum Pickup {
    /// Copied into the buffer: this many bytes.
    Ring(usize),
    /// Bytes of the socket are buffered.
    Socket,
    /// The request was announced as coming on the socket.
    Announced,
}

impl FrameReader {
    pub fn new(stream: Arc<UnixStream>, budget: Arc<InFlight>) -> Self {
        FrameReader {
            stream,
            budget,
            buf: vec![0; BASE_BUFFER],
            filled: 0,
            consumed: 0,
            charged: 0,
            timeout: None,
            sleep: Sleep::Read,
            ring: None,
            last_seq: 0,
            from_ring: false,
        }
    }

    /// Requests may come through `ring` from now on.
    pub fn attach(&mut self, ring: Ring) {
        self.last_seq = ring.req_seq().load(Ordering::SeqCst);
        self.ring = Some(ring);
    }

    /// With a ring: the ring, the `req_seq` of the request handed out last, and whether it came
    /// from the ring (and so is answered there).
    pub fn answer_in_ring(&self) -> Option<(&Ring, u32, bool)> {
        self.ring.as_ref().map(|r| (r, self.last_seq, self.from_ring))
    }

    /// Waits up to `wait` (`None`: for ever) for a frame to begin, then up to
    /// `frame_timeout` for all of it.
    pub fn next(&mut self, wait: Option<Duration>, frame_timeout: Duration) -> Result<Next<'_>, End> {
        self.next_up_to(wait, frame_timeout, hsmbridge_proto::limits::MAX_FRAME)
    }

    /// [`FrameReader::next`] for a frame of at most `max` bytes (a Hello fits
    /// in the base buffer): a longer one is `Broken`, before any of it is read.
    pub fn next_up_to(&mut self, wait: Option<Duration>, frame_timeout: Duration, max: usize) -> Result<Next<'_>, End> {
        self.from_ring = false;
        // A frame announced in the ring must arrive within `frame_timeout` of the announcement,
        // doorbells before it or not.
        let mut announced: Option<Instant> = None;
        let len = loop {
            self.discard_consumed();
            if self.ring.is_some() {
                if self.filled == 0 && announced.is_none() {
                    match self.wait_for_request(wait)? {
                        Pickup::Ring(len) => {
                            self.from_ring = true;
                            return Ok(Next::Frame(&self.buf[..len]));
                        }
                        Pickup::Announced => announced = Some(Instant::now() + frame_timeout),
                        Pickup::Socket => {}
                    }
                }
            } else if self.filled == 0 {
                match self.read_more(wait) {
                    Ok(0) => return Err(End::Closed),
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => return Err(End::Idle),
                    Err(e) => return Err(End::Broken(e)),
                }
            }
            let deadline = announced.unwrap_or_else(|| Instant::now() + frame_timeout);
            while self.filled < 4 {
                self.read_until(deadline)?;
            }
            if self.ring.is_some() && self.buf[..4] == DOORBELL {
                // Doorbells: look at the ring again.
                self.skip_doorbells();
                continue;
            }
            let header = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
            break frame_len(header).map_err(End::Broken)?;
        };
        if let Some(ring) = &self.ring {
            // A request on the socket is announced in the ring first: that announcement is
            // taken now, whatever becomes of the frame (read, or refused over the budget).
            self.last_seq = ring.req_seq().load(Ordering::SeqCst);
        }
        let deadline = announced.unwrap_or_else(|| Instant::now() + frame_timeout);
        if len > max {
            return Err(End::Broken(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame too large here",
            )));
        }
        let total = 4 + len;
        while self.filled < total {
            if self.filled == self.buf.len() && !self.grow(total) {
                self.drain(total, deadline)?;
                return Ok(Next::OverBudget);
            }
            self.read_until(deadline)?;
        }
        self.consumed = total;
        Ok(Next::Frame(&self.buf[4..total]))
    }

    /// With a ring and nothing buffered: waits up to `wait` for the next request's announcement,
    /// polling the ring was done before (`poll_for`); here the thread sleeps on the socket,
    /// saying so in the ring, and wakes for a doorbell, a frame, or the end of the connection.
    fn wait_for_request(&mut self, wait: Option<Duration>) -> Result<Pickup, End> {
        loop {
            let Some(ring) = self.ring.as_ref() else {
                return Ok(Pickup::Socket);
            };
            if self.filled > 0 {
                return Ok(Pickup::Socket);
            }
            let seq = ring.req_seq().load(Ordering::SeqCst);
            if seq != self.last_seq {
                self.last_seq = seq;
                let len = ring.req_len().load(Ordering::SeqCst);
                if len == ON_SOCKET {
                    return Ok(Pickup::Announced);
                }
                let len = len as usize;
                if len > SLOT {
                    return Err(End::Broken(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "ring request past the slot",
                    )));
                }
                ring.read(Slot::Request, &mut self.buf[..len]);
                self.filled = len;
                self.consumed = len;
                return Ok(Pickup::Ring(len));
            }
            ring.sidecar_sleeps().store(1, Ordering::SeqCst);
            if ring.req_seq().load(Ordering::SeqCst) != self.last_seq {
                ring.sidecar_sleeps().store(0, Ordering::SeqCst);
                continue;
            }
            let got = self.read_more(wait);
            if let Some(ring) = self.ring.as_ref() {
                ring.sidecar_sleeps().store(0, Ordering::SeqCst);
            }
            match got {
                Ok(0) => return Err(End::Closed),
                Ok(_) => self.skip_doorbells(),
                Err(e) if is_timeout(&e) => return Err(End::Idle),
                Err(e) => return Err(End::Broken(e)),
            }
        }
    }

    /// Drops the doorbells at the head of the buffered bytes.
    fn skip_doorbells(&mut self) {
        let mut at = 0;
        while self.filled - at >= 4 && self.buf[at..at + 4] == DOORBELL {
            at += 4;
        }
        self.buf.copy_within(at..self.filled, 0);
        self.filled -= at;
    }

    /// Polls up to `budget` for the next frame's first byte without sleeping: a hit if one is
    /// there (bytes already buffered count; so does a closed or failed socket, which the next read
    /// reports).
    pub fn poll_for(&self, budget: Duration) -> Outcome {
        if self.filled > self.consumed {
            Outcome::Hit
        } else if let Some(ring) = &self.ring {
            spin_until(budget, || ring.req_seq().load(Ordering::Acquire) != self.last_seq)
        } else {
            poll_readable(&*self.stream, budget)
        }
    }

    /// How to sleep until the next frame begins (`waiting.rs` chooses).
    pub fn sleep_next(&mut self, how: Sleep) {
        self.sleep = how;
    }

    /// Wipes the bytes of the frame handed out last (it carried a PIN).
    pub fn wipe_last(&mut self) {
        self.buf[..self.consumed].zeroize();
    }

    /// Drops the last frame, keeping bytes that followed it, and gives back
    /// a large buffer once it is no longer needed.
    fn discard_consumed(&mut self) {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        if self.buf.len() > BASE_BUFFER && self.filled <= BASE_BUFFER {
            self.buf.truncate(BASE_BUFFER);
            self.buf.shrink_to_fit();
            self.budget.release(std::mem::take(&mut self.charged));
        }
    }

    /// Doubles the buffer (up to `total`), drawing on the budget.
    fn grow(&mut self, total: usize) -> bool {
        let new_len = total.min(self.buf.len().saturating_mul(2)).max(self.buf.len() + 1);
        let extra = new_len - self.buf.len();
        if !self.budget.charge(extra) {
            return false;
        }
        self.charged += extra;
        self.buf.resize(new_len, 0);
        true
    }

    /// Reads and drops the rest of a `total`-byte frame.
    fn drain(&mut self, total: usize, deadline: Instant) -> Result<(), End> {
        let mut left = total - self.filled;
        self.filled = 0;
        while left > 0 {
            let n = left.min(self.buf.len());
            self.filled = 0;
            let got = self.read_into(n, deadline)?;
            left -= got;
        }
        self.filled = 0;
        Ok(())
    }

    fn read_until(&mut self, deadline: Instant) -> Result<usize, End> {
        let n = self.buf.len() - self.filled;
        self.read_into(n, deadline)
    }

    /// Reads up to `n` more bytes before `deadline`; at least one.
    fn read_into(&mut self, n: usize, deadline: Instant) -> Result<usize, End> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(End::Slow);
        }
        let end = self.filled + n;
        self.set_timeout(Some(left)).map_err(End::Broken)?;
        loop {
            match (&*self.stream).read(&mut self.buf[self.filled..end]) {
                Ok(0) => return Err(End::Broken(io::ErrorKind::UnexpectedEof.into())),
                Ok(got) => {
                    self.filled += got;
                    return Ok(got);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Err(End::Slow),
                Err(e) => return Err(End::Broken(e)),
            }
        }
    }

    /// Reads whatever arrives within `wait` into the free part of the buffer.
    fn read_more(&mut self, wait: Option<Duration>) -> io::Result<usize> {
        if self.sleep == Sleep::Poll && !sleep_until_readable(&*self.stream, wait) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.set_timeout(wait)?;
        loop {
            match (&*self.stream).read(&mut self.buf[self.filled..]) {
                Ok(got) => {
                    self.filled += got;
                    return Ok(got);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if self.timeout != t {
            self.stream.set_read_timeout(t)?;
            self.timeout = t;
        }
        Ok(())
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if let Some(ring) = &self.ring {
            ring.discard();
        }
        self.buf.zeroize();
        self.budget.release(self.charged);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
