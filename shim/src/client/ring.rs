//! A connection's ring (hsmbridge_proto::ring holds the rules): taken with the HelloReply; then a
//! call's request into the request slot, announced; the answer polled for in the ring, then
//! waited for asleep on the socket, where the sidecar rings a doorbell (or, for an answer too
//! large for the slot, writes it as a frame).

use std::sync::atomic::Ordering;

use hsmbridge_proto::ring::{Slot, ON_SOCKET};

use hsmbridge_proto::frame::frame_len;
use prost::Message;

use super::conn::NoSigPipe;

use super::*;

/// The `req_seq` after the current one. Never 0: that is what a freed ring reads as, so no
/// answer word of one can match a request.
fn next_seq(ring: &Ring) -> u32 {
    match ring.req_seq().load(Ordering::Relaxed).wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl Conn {
    /// Says hello and reads the reply, taking the ring's memfd that may come with it (at most
    /// one descriptor; a ring is used only if it is a sealed memfd of the ring's size).
    pub(super) fn hello(&mut self, hello: Call) -> Result<Response, Failed> {
        let req = Request {
            call: Some(hello),
            caller_cpu: self.cpu,
            caller_polls: false,
        };
        encode_frame(&req, &mut self.buf).map_err(|_| Failed::TooLarge)?;
        self.send_frame().map_err(|_| Failed::Transport)?;
        // The reply is the first thing the sidecar sends: read it without the BufReader, so that
        // the descriptor that comes with its first byte is taken (a plain read would drop it).
        let sock = self.stream.get_ref().as_fd();
        let mut got = Vec::new();
        let mut fd = None;
        let mut extra = false;
        let mut chunk = [0u8; 512];
        let body = loop {
            let r = recv_with_fd(sock, &mut chunk).map_err(|_| Failed::Transport)?;
            if r.n == 0 {
                return Err(Failed::Transport);
            }
            extra |= r.extra || (fd.is_some() && r.fd.is_some());
            fd = fd.or(r.fd);
            got.extend_from_slice(&chunk[..r.n]);
            if got.len() >= 4 {
                let len = frame_len([got[0], got[1], got[2], got[3]]).map_err(|_| Failed::Transport)?;
                // Nothing follows the reply until the next request: more bytes are a broken peer.
                match (got.len() - 4).cmp(&len) {
                    std::cmp::Ordering::Less if len <= SLOT => continue,
                    std::cmp::Ordering::Equal => break &got[4..],
                    _ => return Err(Failed::Transport),
                }
            }
        };
        let reply: Response = Message::decode(body).map_err(|_| Failed::Transport)?;
        if let (Some(response::Result::Hello(h)), Some(fd), false) = (&reply.result, fd, extra) {
            if h.ring_bytes as usize == RING_BYTES && check_sealed(fd.as_fd()).is_ok() {
                self.ring = Ring::map(fd.as_fd()).ok();
            }
        }
        Ok(reply)
    }

    /// Announces that the request in `buf` goes on the socket (a sidecar polling the ring then
    /// reads it there at once).
    pub(super) fn announce_on_socket(&mut self) {
        if let Some(ring) = &self.ring {
            ring.req_len().store(ON_SOCKET, Ordering::SeqCst);
            ring.req_seq().store(next_seq(ring), Ordering::SeqCst);
        }
    }

    /// Puts the request encoded in `buf` (it fits a slot) into the ring and announces it, with a
    /// doorbell if the sidecar's thread sleeps. Returns the request's `req_seq`, and whether it
    /// rang (the thread then needs a wake-up, and a CPU: perhaps this one, which polling would
    /// keep from it).
    pub(super) fn send_in_ring(&mut self) -> io::Result<(u32, bool)> {
        let Some(ring) = &self.ring else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let body = &self.buf[4..];
        ring.write(Slot::Request, body);
        ring.req_len().store(body.len() as u32, Ordering::SeqCst);
        let seq = next_seq(ring);
        ring.req_seq().store(seq, Ordering::SeqCst);
        let asleep = ring.sidecar_sleeps().load(Ordering::SeqCst) != 0;
        if asleep {
            NoSigPipe(self.stream.get_ref()).write_all(&DOORBELL)?;
        }
        Ok((seq, asleep))
    }

    /// Waits for the answer to the request just put in the ring: polls up to `budget`, then
    /// sleeps on the socket (saying so in the ring) until a doorbell, the answer's frame or the
    /// end of the connection, at most until `deadline`.
    pub(super) fn wait_in_ring(
        &mut self,
        seq: u32,
        budget: Duration,
        deadline: Option<Instant>,
    ) -> (Result<Response, Failed>, Outcome) {
        let Some(ring) = &self.ring else {
            return (Err(Failed::Transport), Outcome::Blocked);
        };
        let outcome = spin_until(budget, || ring.ans_seq().load(Ordering::Acquire) == seq);
        if outcome != Outcome::Hit {
            ring.shim_sleeps().store(1, Ordering::SeqCst);
            let woken = self.sleep_for_answer(seq, deadline);
            if let Some(ring) = &self.ring {
                ring.shim_sleeps().store(0, Ordering::SeqCst);
            }
            match woken {
                Ok(None) => {}
                Ok(Some(answer)) => return (Ok(answer), outcome),
                Err(e) => return (Err(e), outcome),
            }
        }
        (self.take_answer(seq), outcome)
    }

    /// Sleeps on the socket until the ring holds the answer (`None`) or the answer came there as
    /// a frame (`Some`).
    fn sleep_for_answer(&mut self, seq: u32, deadline: Option<Instant>) -> Result<Option<Response>, Failed> {
        loop {
            if self
                .ring
                .as_ref()
                .is_some_and(|r| r.ans_seq().load(Ordering::SeqCst) == seq)
            {
                return Ok(None);
            }
            if self.stream.buffer().is_empty() {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left.is_some_and(|l| l.is_zero()) || !sleep_until_readable(self.stream.get_ref(), left) {
                    return Err(Failed::Transport);
                }
            }
            if read_frame_or_doorbell(&mut self.stream, &mut self.buf).map_err(|_| Failed::Transport)? {
                // Announced as on the socket before it was written: this is the answer.
                return decode(&mut self.buf).map(Some).map_err(|_| Failed::Transport);
            }
        }
    }

    /// The answer the ring announced for `seq`: from the answer slot (still announced for `seq`
    /// once copied: a ring the sidecar freed as the connection ended reads as zeros, which must
    /// not pass for an empty answer of CKR_OK), or the next frame on the socket.
    fn take_answer(&mut self, seq: u32) -> Result<Response, Failed> {
        let Some(ring) = &self.ring else {
            return Err(Failed::Transport);
        };
        let len = ring.ans_len().load(Ordering::SeqCst);
        if len == ON_SOCKET {
            return self.read_answer_frame();
        }
        let len = len as usize;
        if len > SLOT {
            return Err(Failed::Transport);
        }
        self.buf.clear();
        self.buf.resize(len, 0);
        ring.read(Slot::Answer, &mut self.buf);
        if ring.ans_seq().load(Ordering::SeqCst) != seq {
            return Err(Failed::Transport);
        }
        decode(&mut self.buf).map_err(|_| Failed::Transport)
    }
}
