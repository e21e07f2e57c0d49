//! How many callers are busy at once, and when there were last too many for polling to pay.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::Cpus;

/// After the busy callers last outnumbered the CPU pairs, the automatic mode blocks for this long:
/// an instant with one caller busy, between two of four threads' calls, is not an idle CPU.
pub const CONTENDED_HOLD: Duration = Duration::from_millis(20);

/// The callers of one process (the shim's calling threads, the sidecar's connection threads)
/// that are working or polling rather than blocked.
pub struct Callers {
    busy: AtomicUsize,
    /// When `busy` last exceeded half the usable CPUs, in ns since [`origin`]; 0: never.
    contended_at: AtomicU64,
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    // + 1: 0 means never.
    (origin().elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64) + 1
}

impl Callers {
    pub const fn new() -> Callers {
        Callers {
            busy: AtomicUsize::new(0),
            contended_at: AtomicU64::new(0),
        }
    }

    /// One more caller is busy; returns how many are.
    pub fn enter(&self, cpus: &Cpus) -> usize {
        let n = self.busy.fetch_add(1, Ordering::Relaxed) + 1;
        if n.saturating_mul(2) > cpus.usable {
            self.contended_at.store(now_ns(), Ordering::Relaxed);
        }
        n
    }

    /// One caller fewer is busy.
    pub fn leave(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forgets every caller and the last contention: in the child after fork(), where the
    /// parent's other threads do not exist (atomic stores only: async-signal-safe).
    pub fn reset(&self) {
        self.busy.store(0, Ordering::Relaxed);
        self.contended_at.store(0, Ordering::Relaxed);
    }

    /// Whether there were too many busy callers within the last [`CONTENDED_HOLD`].
    pub fn recently_contended(&self) -> bool {
        let at = self.contended_at.load(Ordering::Relaxed);
        at != 0 && now_ns().saturating_sub(at) < CONTENDED_HOLD.as_nanos() as u64
    }
}

impl Default for Callers {
    fn default() -> Self {
        Callers::new()
    }
}
