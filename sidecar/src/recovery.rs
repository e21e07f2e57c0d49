//! Getting a lost token back. Some modules never report a token again once
//! they have lost it, until they are initialized anew: SoftHSM 2.6 answers
//! C_GetTokenInfo with CKR_GENERAL_ERROR for good once the token's directory
//! has gone away, even after it is back; vendor clients may do the same after
//! a network outage. So while the token stays unreachable and no application
//! has a session open, the health check (health.rs) re-initializes the module
//! (C_Finalize + C_Initialize, backend.rs), at most every [`RETRY_EVERY`].
//!
//! With no session open there is nothing a re-initialization could take from
//! an application: no session handle, no session object, no search, no login
//! (the backend logs out with its last session). Token object handles an
//! application kept may name other objects afterwards (unlike after a
//! sidecar restart, its shim keeps its epoch: its connections stay open, so
//! that no call it is about to send fails); they are token objects, which
//! every application of the pod may use anyway. The same holds for the
//! re-initialization after a credential change (`monitor.rs`). With sessions open the module is left alone: the pod stays
//! NotReady until they are closed.

use std::time::{Duration, Instant};

/// How long the token must be unreachable before the first re-initialization.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(4);
/// The least time between two re-initializations.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);

/// When to re-initialize, from what the health check sees.
#[derive(Debug, Default)]
pub struct Recovery {
    unreachable_since: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl Recovery {
    /// Records whether the token was reachable at `now`; true when a
    /// re-initialization is due.
    pub fn due(&mut self, reachable: bool, now: Instant) -> bool {
        if reachable {
            self.unreachable_since = None;
            return false;
        }
        let since = *self.unreachable_since.get_or_insert(now);
        let waited = now.duration_since(since) >= UNREACHABLE_FOR;
        let rested = self.last_attempt.is_none_or(|t| now.duration_since(t) >= RETRY_EVERY);
        if waited && rested {
            self.last_attempt = Some(now);
            return true;
        }
        false
    }

    /// Records when an attempt [`Recovery::due`] asked for ended: the next one
    /// waits [`RETRY_EVERY`] from then.
    pub fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reinitializes_only_after_the_token_stayed_away_and_not_more_often_than_the_retry_interval() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        assert!(!r.due(true, t0));
        assert!(!r.due(false, t0), "the first miss is not enough");
        assert!(!r.due(false, t0 + Duration::from_secs(2)));
        assert!(r.due(false, t0 + UNREACHABLE_FOR));
        assert!(
            !r.due(false, t0 + UNREACHABLE_FOR + Duration::from_secs(2)),
            "rests between attempts"
        );
        assert!(r.due(false, t0 + UNREACHABLE_FOR + RETRY_EVERY));
    }

    #[test]
    fn a_reachable_token_resets_the_wait() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        assert!(!r.due(false, t0));
        assert!(!r.due(true, t0 + Duration::from_secs(3)));
        assert!(!r.due(false, t0 + Duration::from_secs(5)), "a new outage waits again");
        assert!(r.due(false, t0 + Duration::from_secs(5) + UNREACHABLE_FOR));
    }

    #[test]
    fn the_rest_counts_from_the_end_of_a_long_attempt() {
        let t0 = Instant::now();
        let mut r = Recovery::default();
        r.due(false, t0);
        assert!(r.due(false, t0 + UNREACHABLE_FOR));
        let ended = t0 + UNREACHABLE_FOR + Duration::from_secs(30);
        r.attempted(ended);
        assert!(
            !r.due(false, ended + Duration::from_secs(1)),
            "a slow C_Initialize is not retried at once"
        );
        assert!(r.due(false, ended + RETRY_EVERY));
    }
}
