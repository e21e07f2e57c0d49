//! Prometheus metrics in the text exposition format, hand-written (three metric families do not
//! need a registry crate):
//! `hsm_operator_reconciles_total`, `hsm_operator_reconcile_failures_total{reason}`,
//! `hsm_operator_reconcile_duration_seconds` (histogram), and `hsm_operator_leader` (gauge).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exposition::{header, Histogram};
use crate::webhook::WebhookMetrics;

/// Upper bounds (seconds) of the duration histogram's buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug)]
pub struct Metrics {
    /// The injection webhook's reviews, rendered after the controller's families.
    pub webhook: Arc<WebhookMetrics>,
    reconciles: AtomicU64,
    /// Failures by reason. A std Mutex is fine: it is held for a map update only, never across
    /// an await, and failures are rare.
    failures: Mutex<BTreeMap<&'static str, u64>>,
    duration: Histogram,
    leader: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            webhook: Arc::default(),
            reconciles: AtomicU64::new(0),
            failures: Mutex::default(),
            duration: Histogram::new(&BUCKETS),
            leader: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// One reconcile finished after `elapsed`.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// One reconcile failed for `reason` (a short, fixed label value).
    pub fn failed(&self, reason: &'static str) {
        let mut failures = match self.failures.lock() {
            Ok(guard) => guard,
            // A panic while holding this lock cannot leave the map inconsistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        *failures.entry(reason).or_insert(0) += 1;
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        header(
            &mut out,
            "hsm_operator_reconciles_total",
            "counter",
            "Reconciliations of HsmPartitions.",
        );
        let _ = writeln!(
            out,
            "hsm_operator_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "hsm_operator_reconcile_failures_total",
            "counter",
            "Failed reconciliations by reason.",
        );
        let failures = match self.failures.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for (reason, n) in failures {
            let _ = writeln!(out, "hsm_operator_reconcile_failures_total{{reason=\"{reason}\"}} {n}");
        }

        self.duration.render(
            &mut out,
            "hsm_operator_reconcile_duration_seconds",
            "Time spent in one reconciliation.",
        );

        header(
            &mut out,
            "hsm_operator_leader",
            "gauge",
            "1 while this replica holds the leader Lease.",
        );
        let _ = writeln!(
            out,
            "hsm_operator_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out.push_str(&self.webhook.render());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(7));
        m.reconciled(Duration::from_millis(300));
        m.failed("conflict");
        m.failed("conflict");
        m.failed("forbidden");
        m.set_leader(true);
        let text = m.render();
        assert!(text.contains("\nhsm_operator_reconciles_total 2\n"), "{text}");
        assert!(text.contains("hsm_operator_reconcile_failures_total{reason=\"conflict\"} 2\n"));
        assert!(text.contains("hsm_operator_reconcile_failures_total{reason=\"forbidden\"} 1\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 0\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_sum 0.307\n"));
        assert!(text.contains("hsm_operator_reconcile_duration_seconds_count 2\n"));
        assert!(text.contains("hsm_operator_leader 1\n"));
    }
}
