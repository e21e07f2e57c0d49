//! Passing the ring's descriptor with the HelloReply (`SCM_RIGHTS`), and receiving at most one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Room for one descriptor's control message, u64-aligned as `cmsghdr` needs.
#[repr(C, align(8))]
struct OneFd([u8; 64]);

fn space_for_one() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// Sends `bytes` with `fd` attached (without SIGPIPE); returns how many bytes went. The caller
/// writes the rest, if any, as usual: the descriptor travels with the first byte.
pub fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut control = OneFd([0; 64]);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one; the fields set below point at `iov` and
    // `control`, which outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space_for_one() as _;
    // SAFETY: the control buffer holds CMSG_SPACE(one fd) bytes (64 >= that), so the first
    // header and its data fit; CMSG_FIRSTHDR is non-null for a control length that large.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` describes live buffers (above); the socket is borrowed, so open.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What one receive brought.
pub struct Received {
    /// Bytes read into the buffer (0: the peer closed the connection).
    pub n: usize,
    /// The first descriptor that came with them.
    pub fd: Option<OwnedFd>,
    /// More than one descriptor came (those past the first are closed).
    pub extra: bool,
}

/// Reads into `buf`, taking at most one descriptor sent with the bytes (close-on-exec). The
/// read timeout set on the socket applies, as for `read`.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = OneFd([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_with_fd: an empty msghdr, then pointers to buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space_for_one() as _;
    let n = loop {
        // SAFETY: `msg` describes `buf` (writable) and the control buffer; the socket is borrowed.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut got = Received {
        n,
        fd: None,
        extra: msg.msg_flags & libc::MSG_CTRUNC != 0,
    };
    // SAFETY: the kernel filled `msg_controllen` bytes of the control buffer with well-formed
    // headers; CMSG_FIRSTHDR/NXTHDR walk only within them, and each SCM_RIGHTS header's data
    // holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors, now ours to own (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i)));
                    if got.fd.is_none() {
                        got.fd = Some(fd);
                    } else {
                        got.extra = true; // dropped: closed
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(got)
}
