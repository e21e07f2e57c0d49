//! Memory for answers. A call can ask for an output buffer of up to
//! `MAX_DATA` with a request of a few bytes, and a peer that then reads its
//! answers slowly keeps that memory. So output buffers larger than
//! [`SMALL`] are reserved from one budget shared by all connections before
//! they are allocated (twice: the buffer and its encoded answer), and given
//! back when the connection's thread has written the answer. A call that
//! finds the budget spent gets `CKR_HOST_MEMORY`. README.md "Limits" states
//! the numbers.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cryptoki_sys::{CKR_HOST_MEMORY, CK_RV};

/// Bytes of large answers held by all connections together.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Buffers up to this size need no reservation (signatures, digests, random).
pub const SMALL: usize = 64 << 10;

static HELD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// What this thread's current call has reserved.
    static MINE: Cell<usize> = const { Cell::new(0) };
}

/// Reserves room for an output buffer of `n` bytes and its answer.
pub fn reserve(n: usize) -> Result<(), CK_RV> {
    if n <= SMALL {
        return Ok(());
    }
    let need = n.saturating_mul(2);
    HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
        held.checked_add(need).filter(|total| *total <= MAX_ANSWER_BYTES)
    })
    .map_err(|_| CKR_HOST_MEMORY)?;
    MINE.with(|m| m.set(m.get() + need));
    Ok(())
}

/// Gives back what this thread's call reserved (its answer is written).
pub fn release() {
    let mine = MINE.with(|m| m.replace(0));
    if mine > 0 {
        HELD.fetch_sub(mine, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_draw_on_the_budget_until_released() {
        std::thread::spawn(|| {
            assert_eq!(reserve(SMALL), Ok(()));
            assert_eq!(MINE.with(Cell::get), 0, "small buffers are free");
            assert_eq!(reserve(MAX_ANSWER_BYTES / 2), Ok(()));
            assert_eq!(reserve(1 << 20), Err(CKR_HOST_MEMORY));
            release();
            assert_eq!(reserve(1 << 20), Ok(()));
            release();
        })
        .join()
        .expect("thread");
    }
}
