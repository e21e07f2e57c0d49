//! Writing an answer to a peer that may read slowly: all of it within [`FRAME_TIMEOUT`], one
//! write (and no other system call) when the socket takes it at once; or, to a request that
//! came through the ring, into the ring (hsmbridge_proto::ring's rules).

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cryptoki_sys::CKR_HOST_MEMORY;
use hsmbridge_proto::frame::{encode_frame, shrink, DOORBELL};
use hsmbridge_proto::ring::{Ring, Slot, ON_SOCKET, SLOT};
use hsmbridge_proto::wire::Response;

use super::frames::FrameReader;
use super::limits::FRAME_TIMEOUT;

/// A socket whose writes its send timeout bounds (a fake in the tests).
pub(super) trait TimedWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedWrite for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

/// Writes `resp` as one frame (an answer too large for a frame is `CKR_HOST_MEMORY` instead);
/// returns the bytes written. The socket's send timeout is [`FRAME_TIMEOUT`] between answers
/// (`connection.rs` sets it once).
pub(super) fn write_answer(stream: &UnixStream, resp: &Response, wbuf: &mut Vec<u8>) -> io::Result<usize> {
    if encode_frame(resp, wbuf).is_err() {
        encode_frame(&super::connection::answer(CKR_HOST_MEMORY), wbuf)?;
    }
    let result = write_all_within(&mut &*stream, wbuf, FRAME_TIMEOUT);
    shrink(wbuf);
    result
}

/// Answers the request `reader` handed out last where it came from: the ring or the socket.
pub(super) fn reply(
    reader: &FrameReader,
    stream: &UnixStream,
    resp: &Response,
    wbuf: &mut Vec<u8>,
) -> io::Result<usize> {
    match reader.answer_in_ring() {
        Some((ring, seq, true)) => write_in_ring(ring, seq, stream, resp, wbuf),
        Some((ring, seq, false)) => {
            // Answered on the socket; the ring's answer words move on all the same.
            ring.ans_len().store(ON_SOCKET, Ordering::SeqCst);
            ring.ans_seq().store(seq, Ordering::SeqCst);
            write_answer(stream, resp, wbuf)
        }
        None => write_answer(stream, resp, wbuf),
    }
}

/// Puts the answer in the ring's answer slot and then announces it (a doorbell if the shim sleeps);
/// one too large for the slot is announced as on the socket, then written there.
fn write_in_ring(ring: &Ring, seq: u32, stream: &UnixStream, resp: &Response, wbuf: &mut Vec<u8>) -> io::Result<usize> {
    if encode_frame(resp, wbuf).is_err() {
        encode_frame(&super::connection::answer(CKR_HOST_MEMORY), wbuf)?;
    }
    let body = wbuf.len() - 4;
    let result = if body <= SLOT {
        ring.write(Slot::Answer, &wbuf[4..]);
        ring.ans_len().store(body as u32, Ordering::SeqCst);
        ring.ans_seq().store(seq, Ordering::SeqCst);
        if ring.shim_sleeps().load(Ordering::SeqCst) != 0 {
            write_all_within(&mut &*stream, &DOORBELL, FRAME_TIMEOUT).map(|_| wbuf.len())
        } else {
            Ok(wbuf.len())
        }
    } else {
        ring.ans_len().store(ON_SOCKET, Ordering::SeqCst);
        ring.ans_seq().store(seq, Ordering::SeqCst);
        write_all_within(&mut &*stream, wbuf, FRAME_TIMEOUT)
    };
    shrink(wbuf);
    result
}

/// Writes all of `buf` within `limit`, the socket's send timeout on entry. A peer reading a few
/// bytes at a time must not hold the answer longer: after a short write, each further write gets
/// what is left of `limit` as its timeout, and `limit` is put back at the end. The common answer,
/// taken by the first write, sets nothing (a `setsockopt` per call was 0.3-0.5 µs of a cheap call).
pub(super) fn write_all_within(w: &mut impl TimedWrite, buf: &[u8], limit: Duration) -> io::Result<usize> {
    let deadline = Instant::now() + limit;
    let mut sent = 0;
    let mut first = true;
    let mut shortened = false;
    let result = loop {
        if sent == buf.len() {
            break Ok(sent);
        }
        if !first {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(io::ErrorKind::TimedOut.into());
            }
            if let Err(e) = w.set_write_timeout(Some(left)) {
                break Err(e);
            }
            shortened = true;
        }
        first = false;
        match w.write(&buf[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if shortened {
        let _ = w.set_write_timeout(Some(limit));
    }
    result
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
