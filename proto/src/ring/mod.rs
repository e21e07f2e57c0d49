//! The shared-memory ring: a connection's hot path without system calls.
//!
//! A hand-over through the socket costs a send and a receive per side, ~4-5 µs of system calls
//! per call on a VM (README.md "The floor of any hand-over"); through shared memory it costs two
//! cache-line transfers (~0.1 µs). So when the shim polls for its answer it may carry the call
//! in a ring instead: a memfd the sidecar creates for the connection when the Hello asks for one
//! (`Hello.ring`), seals so that it can never change size, maps, and passes to the shim with the
//! `HelloReply` (`ring_bytes`, one `SCM_RIGHTS` descriptor). The sidecar never accepts a
//! descriptor. The socket stays for everything else: the Hello, calls too large for a slot or
//! carrying a PIN, calls that do not poll, wake-ups of a side that went to sleep, and the end of
//! the connection.
//!
//! The layout (offsets in bytes; each control word on its own cache line):
//!
//! | offset | what | written by |
//! |---|---|---|
//! | 0 | `req_seq`: bumped for each request the shim sends, in the ring or on the socket | shim |
//! | 4 | `req_len`: the request's length in the request slot, or [`ON_SOCKET`] | shim |
//! | 64 | `ans_seq`: the `req_seq` of the request answered in the ring | sidecar |
//! | 68 | `ans_len`: the answer's length in the answer slot, or [`ON_SOCKET`] | sidecar |
//! | 128 | `sidecar_sleeps`: the sidecar's thread sleeps on the socket (wake it there) | sidecar |
//! | 192 | `shim_sleeps`: the calling thread sleeps on the socket (wake it there) | shim |
//! | [`REQUEST_SLOT`] | the request's encoded message (no length prefix) | shim |
//! | [`ANSWER_SLOT`] | the answer's encoded message (no length prefix) | sidecar |
//!
//! The rules, for each request:
//! - The shim writes the message into the request slot, stores `req_len`, then `req_seq + 1`
//!   (`SeqCst`), then reads `sidecar_sleeps`: if set, it writes a doorbell
//!   ([`DOORBELL`](crate::frame::DOORBELL), four bytes no frame starts with) to the socket. A request sent on the socket is announced the same way first, with `req_len`
//!   [`ON_SOCKET`], and needs no doorbell: its frame wakes the sidecar.
//! - The sidecar waits for `req_seq` to change: polling, then with `sidecar_sleeps` set (and
//!   `req_seq` read once more: the two `SeqCst` orders make sure one side sees the other) asleep
//!   on the socket. It copies the message out of the slot before it looks at it (the shim may
//!   rewrite it at any time) and refuses a length past [`SLOT`]: the connection closes.
//! - A request from the ring is answered in the ring: the message, `ans_len`, then `ans_seq`
//!   (`SeqCst`), then a doorbell if `shim_sleeps` is set. An answer too large for the slot is
//!   announced with `ans_len` [`ON_SOCKET`] and then written to the socket as a frame.
//! - A request from the socket is answered on the socket, and `ans_seq` is set to its `req_seq`
//!   all the same (so no old `ans_seq` can ever match a new request).
//! - A doorbell on the socket, in either direction, is otherwise ignored (a side may find one
//!   left over from a wake-up it did not need).
//!
//! Nothing in the ring is trusted by the side that reads it: the words are read once, lengths are
//! checked against [`SLOT`], and every byte is copied (with atomic loads: the peer may write while
//! it is read) into private memory before anything parses it. The sealed size means no access
//! faults; a peer that rewrites the ring only garbles its own calls. When the connection ends the
//! sidecar frees the ring's pages ([`Ring::discard`]): a shim that keeps the memfd keeps only
//! zeros, and nothing the sidecar wrote stays charged to it.

mod fd_pass;
mod memfd;

pub use fd_pass::{recv_with_fd, send_with_fd, Received};
pub use memfd::{check_sealed, new_memfd, NotARing};

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Largest message one slot carries: every hot-path call and its answer (a signature, random
/// bytes up to this size, a handful of attributes) fits; a larger one goes on the socket.
pub const SLOT: usize = 8 << 10;
/// Where the request slot starts: after a page of control words.
pub const REQUEST_SLOT: usize = 4096;
/// Where the answer slot starts.
pub const ANSWER_SLOT: usize = REQUEST_SLOT + SLOT;
/// The size of every ring, and the only size a sidecar maps.
pub const RING_BYTES: usize = ANSWER_SLOT + SLOT;
/// A length meaning: the message is the next frame of non-zero length on the socket.
pub const ON_SOCKET: u32 = u32::MAX;

const REQ_SEQ: usize = 0;
const REQ_LEN: usize = 4;
const ANS_SEQ: usize = 64;
const ANS_LEN: usize = 68;
const SIDECAR_SLEEPS: usize = 128;
const SHIM_SLEEPS: usize = 192;

/// Which slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Request,
    Answer,
}

impl Slot {
    fn offset(self) -> usize {
        match self {
            Slot::Request => REQUEST_SLOT,
            Slot::Answer => ANSWER_SLOT,
        }
    }
}

/// One ring mapped into this process, unmapped when dropped. Only atomics touch it: the peer
/// process writes it concurrently, and no Rust reference to its plain bytes is ever made.
pub struct Ring {
    base: NonNull<u8>,
}

// SAFETY: the mapping is process memory valid until drop, accessed only through atomics, so any
// thread may use it; nothing in it is tied to the thread that mapped it.
unsafe impl Send for Ring {}
// SAFETY: as for Send: every access is an atomic load or store.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps [`RING_BYTES`] of `fd`, shared and writable. The caller made `fd` with [`new_memfd`]
    /// (the sidecar) or checked it with [`check_sealed`] (the shim), so no access past the file's
    /// end can fault.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<Ring> {
        // SAFETY: a fresh mapping at an address the kernel chooses: it overlaps nothing of ours;
        // the descriptor is borrowed, so open for the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RING_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Ring { base })
    }

    /// Frees the ring's pages (the peer's mapping then reads zeros): the sidecar, as the
    /// connection ends, so that memory it wrote is not kept by a peer that holds on to the memfd.
    pub fn discard(&self) {
        // SAFETY: the range is exactly this mapping, shared and writable; MADV_REMOVE only frees
        // its pages (later reads see zeros), which nothing here relies on after the call.
        unsafe { libc::madvise(self.base.as_ptr().cast(), RING_BYTES, libc::MADV_REMOVE) };
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= REQUEST_SLOT);
        // SAFETY: the offset is one of the control words' constants: in the mapping and 4-byte
        // aligned (the mapping is page-aligned); the memory lives as long as `self`, and only
        // atomics access it, so a shared reference to an AtomicU32 there is sound.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    pub fn req_seq(&self) -> &AtomicU32 {
        self.word(REQ_SEQ)
    }
    pub fn req_len(&self) -> &AtomicU32 {
        self.word(REQ_LEN)
    }
    pub fn ans_seq(&self) -> &AtomicU32 {
        self.word(ANS_SEQ)
    }
    pub fn ans_len(&self) -> &AtomicU32 {
        self.word(ANS_LEN)
    }
    pub fn sidecar_sleeps(&self) -> &AtomicU32 {
        self.word(SIDECAR_SLEEPS)
    }
    pub fn shim_sleeps(&self) -> &AtomicU32 {
        self.word(SHIM_SLEEPS)
    }

    fn words(&self, slot: Slot) -> &[AtomicU64] {
        // SAFETY: the slot lies inside the mapping (REQUEST_SLOT/ANSWER_SLOT + SLOT <=
        // RING_BYTES), starts 8-byte aligned and holds SLOT / 8 words; it lives as long as
        // `self` and only atomics access it.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(slot.offset()).cast::<AtomicU64>(), SLOT / 8) }
    }

    /// Copies the first `out.len()` bytes of `slot` into `out` (at most [`SLOT`]; the caller
    /// checked the length), whatever the peer writes meanwhile.
    pub fn read(&self, slot: Slot, out: &mut [u8]) {
        let n = out.len().min(SLOT);
        for (chunk, word) in out[..n].chunks_mut(8).zip(self.words(slot)) {
            let bytes = word.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// Writes `bytes` (at most [`SLOT`]; the caller checked) at the start of `slot`.
    pub fn write(&self, slot: Slot, bytes: &[u8]) {
        let n = bytes.len().min(SLOT);
        for (chunk, word) in bytes[..n].chunks(8).zip(self.words(slot)) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping made in `map`, and no reference into it
        // outlives `self` (they all borrow it).
        unsafe { libc::munmap(self.base.as_ptr().cast(), RING_BYTES) };
    }
}

#[cfg(test)]
mod tests;
