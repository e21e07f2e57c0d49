//! The file behind a ring: made by the sidecar, checked by the shim.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::RING_BYTES;

/// A new memfd of [`RING_BYTES`], sealed so that it can never change size (nor be unsealed): the
/// peer it is passed to cannot make an access to the mapping fault.
pub fn new_memfd() -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; the flags are memfd_create's own.
    let raw = unsafe { libc::memfd_create(c"hsmbridge-ring".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ftruncate on the descriptor just made, to a size that fits off_t.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), RING_BYTES as libc::off_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS with seal flags on a memfd made with MFD_ALLOW_SEALING.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Why a descriptor offered as a ring is not one.
#[derive(Debug, PartialEq, Eq)]
pub enum NotARing {
    /// Not a regular file, or fstat failed.
    NotAFile,
    /// Not exactly [`RING_BYTES`] long.
    Size,
    /// Not a memfd sealed against shrinking: it could be truncated under the mapping, and the
    /// next access would fault (SIGBUS).
    NotSealed,
}

/// Checks that `fd` can be mapped as a ring without any later access faulting: a memfd of
/// exactly [`RING_BYTES`] that can never shrink.
pub fn check_sealed(fd: BorrowedFd<'_>) -> Result<(), NotARing> {
    // SAFETY: `st` is written by fstat before it is read (the zeroed value is never used on
    // failure); the descriptor is borrowed, so open for the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above: a valid descriptor and a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(NotARing::NotAFile);
    }
    if st.st_size != RING_BYTES as libc::off_t {
        return Err(NotARing::Size);
    }
    // SAFETY: F_GET_SEALS takes no argument and only reads the file's seals; it fails (EINVAL)
    // on anything but a memfd or other shmem file.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(NotARing::NotSealed);
    }
    Ok(())
}
