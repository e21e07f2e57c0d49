//! Object searches in progress. A module holds the result of every
//! C_FindObjectsInit until C_FindObjectsFinal (SoftHSM: a set of all matching
//! handles), so 1000 sessions each searching 4096 objects cost it 200 MB.
//! The sidecar lets at most [`MAX_SEARCHES`] run at once; one more is
//! `CKR_HOST_MEMORY` without calling the module.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use cryptoki_sys::{CKR_HOST_MEMORY, CK_RV};

/// Searches in progress across the sidecar (real clients search, read and
/// finish at once).
pub const MAX_SEARCHES: usize = 64;

#[derive(Default)]
pub struct Searches(Mutex<HashSet<u64>>);

impl Searches {
    fn set(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `init` (C_FindObjectsInit on `session`) if a search may start;
    /// records it when the module started it.
    pub fn start(&self, session: u64, init: impl FnOnce() -> CK_RV) -> CK_RV {
        let mut set = self.set();
        if !set.contains(&session) && set.len() >= MAX_SEARCHES {
            return CKR_HOST_MEMORY;
        }
        let rv = init();
        if rv == cryptoki_sys::CKR_OK {
            set.insert(session);
        }
        rv
    }

    /// The search on `session` ended (C_FindObjectsFinal, or the session closed).
    pub fn ended(&self, session: u64) {
        self.set().remove(&session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::{CKR_OK, CKR_OPERATION_ACTIVE};

    #[test]
    fn searches_past_the_cap_do_not_reach_the_module() {
        let s = Searches::default();
        for session in 0..MAX_SEARCHES as u64 {
            assert_eq!(s.start(session, || CKR_OK), CKR_OK);
        }
        let mut called = false;
        assert_eq!(
            s.start(1000, || {
                called = true;
                CKR_OK
            }),
            CKR_HOST_MEMORY
        );
        assert!(!called);
        // The module's own answer for a session that searches already.
        assert_eq!(s.start(0, || CKR_OPERATION_ACTIVE), CKR_OPERATION_ACTIVE);
        s.ended(0);
        assert_eq!(s.start(1000, || CKR_OK), CKR_OK);
    }
}
