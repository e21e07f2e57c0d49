//! A connection's ring (hsmbridge_proto::ring holds the rules): made here when the Hello asks for
//! one, and sent to the shim with the HelloReply. The sidecar never accepts a descriptor: it maps
//! only memory it created and sealed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use hsmbridge_proto::frame::{encode_frame, shrink};
use hsmbridge_proto::ring::{new_memfd, send_with_fd, Ring};
use hsmbridge_proto::wire::Response;
use tracing::debug;

use super::answer::write_all_within;
use super::frames::FrameReader;
use super::limits::FRAME_TIMEOUT;

/// Makes a ring, attaches it to `reader`, and gives the memfd to send; `None` if this process
/// cannot make one (the connection then uses the socket alone).
pub(super) fn make(reader: &mut FrameReader, app: u64) -> Option<OwnedFd> {
    let made = new_memfd().and_then(|fd| Ring::map(fd.as_fd()).map(|ring| (ring, fd)));
    match made {
        Ok((ring, fd)) => {
            reader.attach(ring);
            Some(fd)
        }
        Err(e) => {
            debug!(app, error = %e, "no ring for this connection");
            None
        }
    }
}

/// Writes the HelloReply `resp` with the ring's memfd attached to its first byte.
pub(super) fn send_reply_with(
    stream: &UnixStream,
    resp: &Response,
    fd: &OwnedFd,
    wbuf: &mut Vec<u8>,
) -> io::Result<usize> {
    encode_frame(resp, wbuf)?;
    let result = send_with_fd(stream.as_fd(), wbuf, fd.as_fd())
        .and_then(|first| write_all_within(&mut &*stream, &wbuf[first..], FRAME_TIMEOUT).map(|rest| first + rest));
    shrink(wbuf);
    result
}
