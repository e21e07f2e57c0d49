//! The audit trail: one JSON line per security-relevant event (README "Audit trail"), on its own
//! stream (stdout, or `--audit-file`), never the log's.
//!
//! - `event.rs`: what is recorded, and which calls are events (`subject`);
//! - `key_names.rs`: a key's `CKA_LABEL` and `CKA_ID`, looked up once per handle;
//! - `line.rs`: the JSON of one line;
//! - `writer.rs`: the thread that writes lines.
//!
//! The data path never waits for the audit: events go through a bounded queue
//! ([`QUEUE_LINES`]); when it is full the event is dropped, counted
//! (`hsmbridge_sidecar_audit_dropped_total`) and the count itself becomes a line once there is
//! room. Past half full, refusals, logins and logouts are dropped first (any app can make many
//! of them cheaply; they must not push key uses out). A line never holds a PIN, data, or key material: events carry handles, names, numbers
//! and CK_RVs only (there is no field that could take bytes of a request).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::warn;

mod calls;
mod event;
mod key_names;
mod line;
mod writer;

pub use event::{subject, Caller, Event, Kind, Subject};
pub use key_names::{KeyName, KeyNames};
pub use line::Pod;
pub use writer::Output;

use crate::metrics::Metrics;
use crate::server::RateLimited;

/// Events queued for the writer at most.
pub const QUEUE_LINES: usize = 4096;

static DROPPED_LOG: RateLimited = RateLimited::new(Duration::from_secs(10));

pub struct Audit {
    queue: Option<SyncSender<Event>>,
    /// Events queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
}

impl Audit {
    /// No audit trail (`serve --no-audit`): every event is discarded.
    pub fn off() -> Self {
        Audit {
            queue: None,
            queued: Arc::default(),
            dropped: Arc::default(),
            metrics: None,
        }
    }

    /// Starts the writer thread for `output`.
    pub fn start(output: Output, pod: Pod, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        writer::spawn(output, pod, rx, queued.clone(), dropped.clone(), metrics.clone())?;
        Ok(Audit {
            queue: Some(tx),
            queued,
            dropped,
            metrics: Some(metrics),
        })
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `event` without waiting; a full queue drops it (and counts it).
    pub fn record(&self, event: Event) {
        let Some(queue) = &self.queue else { return };
        if event.kind.is_low_priority() && self.queued.load(Ordering::Relaxed) >= QUEUE_LINES / 2 {
            self.drop_one();
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.drop_one();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.drop_one();
            }
        }
    }

    /// One event lost: counted now (the metric), and in the next line the writer writes.
    fn drop_one(&self) {
        if let Some(m) = &self.metrics {
            m.audit_dropped(1);
        }
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        DROPPED_LOG.log(|suppressed| {
            warn!(
                dropped = n,
                suppressed,
                queue = QUEUE_LINES,
                "audit queue full: events dropped (the count follows in the audit trail)"
            )
        });
    }

    /// An event of the sidecar itself (no application): the credential or the configuration
    /// changed, the module was re-initialized, the backend logged in with the held PIN.
    pub fn sidecar_event(&self, kind: Kind, function: &'static str, result: cryptoki_sys::CK_RV, detail: String) {
        self.record(Event {
            time: SystemTime::now(),
            kind,
            app: None,
            caller: None,
            function,
            mechanism: None,
            key: None,
            object: None,
            result,
            detail: Some(detail),
        });
    }
}

#[cfg(test)]
mod tests;
