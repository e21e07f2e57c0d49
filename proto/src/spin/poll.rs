//! Polling one descriptor for a bounded time, and sleeping on it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// One `poll(2)` for POLLIN of up to `ms` (0: never sleeps; -1: no limit). `true` if `fd` is
/// readable, hung up or in error, or the poll itself failed (the read that follows reports those);
/// `false` if the time ran out or a signal interrupted it.
fn poll_in(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one live, writable pollfd and the count says one; the descriptor is
    // borrowed, so open for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0 || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
}

/// Polls `fd` without sleeping until it is readable (or hung up, or in error: the read that
/// follows reports those) or `budget` has passed. Returns whether it became ready; `false` means
/// the caller blocks as it would have without polling. Never waits past `budget`.
pub fn wait_readable(fd: impl AsFd, budget: Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let fd = fd.as_fd();
    let deadline = Instant::now() + budget;
    loop {
        if poll_in(fd, 0) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// Polls for `budget` (if any) and says how it went, for [`Adaptive::record`](super::Adaptive).
pub fn poll_readable(fd: impl AsFd, budget: Duration) -> super::Outcome {
    if budget.is_zero() {
        super::Outcome::Blocked
    } else if wait_readable(fd, budget) {
        super::Outcome::Hit
    } else {
        super::Outcome::Miss
    }
}

/// Sleeps in `poll(POLLIN)` until `fd` is readable (or hung up, or in error: the read that follows
/// reports those), at most `timeout` (`None`: no limit); unlike a blocking read, woken only by
/// data ([`Sleep::Poll`](super::Sleep)). Returns `false` if the time ran out.
pub fn sleep_until_readable(fd: impl AsFd, timeout: Option<Duration>) -> bool {
    let fd = fd.as_fd();
    // A timeout too far off to be an instant is no limit.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up: a timeout of 0 ms would never sleep.
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        if poll_in(fd, ms) {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

/// How often a spin on a ring gives its CPU away for a moment ([`spin_until`]).
pub const YIELD_EVERY: Duration = Duration::from_micros(20);

/// Spins until `ready()` says yes or `budget` has passed: how an end waits on a ring
/// (crate::ring). A zero budget does not look at all.
///
/// Unlike polling a socket, this spin makes no system call, so nothing lets the scheduler run
/// another thread on this CPU: if the other end was woken here (the scheduler puts a woken thread
/// beside its waker), it would wait until this spin ends. So every [`YIELD_EVERY`] the spin
/// yields (`sched_yield`: returns at once when nothing else waits for this CPU).
pub fn spin_until(budget: Duration, mut ready: impl FnMut() -> bool) -> super::Outcome {
    if budget.is_zero() {
        return super::Outcome::Blocked;
    }
    let start = Instant::now();
    let deadline = start + budget;
    let mut next_yield = start + YIELD_EVERY;
    loop {
        for _ in 0..16 {
            if ready() {
                return super::Outcome::Hit;
            }
            std::hint::spin_loop();
        }
        let now = Instant::now();
        if now >= deadline {
            return super::Outcome::Miss;
        }
        if now >= next_yield {
            // SAFETY: no arguments; it only asks the scheduler to run another thread first.
            unsafe { libc::sched_yield() };
            next_yield = now + YIELD_EVERY;
        }
    }
}
