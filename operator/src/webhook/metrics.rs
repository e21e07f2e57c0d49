//! The webhook's metrics, in the Prometheus text format, for the operator's `/metrics`:
//! `hsm_operator_webhook_requests_total{outcome}` (injected | skipped | denied | invalid) and the
//! histogram `hsm_operator_webhook_duration_seconds` (body read to response ready, per review).
//!
//! Registering: create one `Arc<WebhookMetrics>`, pass it in `WebhookConfig::metrics`, and append
//! `webhook_metrics.render()` to the operator's exposition.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds); fine below 10 ms, where the latency target lives.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// How one review ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Patched.
    Injected,
    /// Allowed unchanged: not opted in, already injected, not a pod CREATE.
    Skipped,
    /// Refused with a message.
    Denied,
    /// Not an AdmissionReview (HTTP 400).
    Invalid,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Injected,
        Outcome::Skipped,
        Outcome::Denied,
        Outcome::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Default)]
pub struct WebhookMetrics {
    outcomes: [AtomicU64; 4],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds (an integer, so it can be an atomic).
    sum_nanos: AtomicU64,
}

impl WebhookMetrics {
    /// One review took `elapsed` and ended with `outcome`.
    pub fn observe(&self, outcome: Outcome, elapsed: Duration) {
        let slot = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[slot].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (bound, counter) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Reviews counted so far with `outcome`.
    #[cfg(test)]
    pub fn count(&self, outcome: Outcome) -> u64 {
        let slot = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[slot].load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1) of the reviews so far, in
    /// seconds (`None` before any review, `+Inf` past the last bucket). Tests report it.
    #[cfg(test)]
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * count as f64).ceil().max(1.0) as u64;
        Some(
            BUCKETS
                .iter()
                .zip(&self.buckets)
                .find(|(_, n)| n.load(Ordering::Relaxed) >= rank)
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
    }

    /// The text exposition (format 0.0.4) of the webhook's families.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP hsm_operator_webhook_requests_total Admission reviews by outcome."
        );
        let _ = writeln!(out, "# TYPE hsm_operator_webhook_requests_total counter");
        for (outcome, counter) in Outcome::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "hsm_operator_webhook_requests_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP hsm_operator_webhook_duration_seconds Time to answer one admission review."
        );
        let _ = writeln!(
            out,
            "# TYPE hsm_operator_webhook_duration_seconds histogram"
        );
        for (bound, counter) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "hsm_operator_webhook_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "hsm_operator_webhook_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "hsm_operator_webhook_duration_seconds_sum {sum}");
        let _ = writeln!(out, "hsm_operator_webhook_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = WebhookMetrics::default();
        m.observe(Outcome::Injected, Duration::from_micros(800));
        m.observe(Outcome::Injected, Duration::from_millis(4));
        m.observe(Outcome::Denied, Duration::from_millis(30));
        let text = m.render();
        for line in [
            "hsm_operator_webhook_requests_total{outcome=\"injected\"} 2\n",
            "hsm_operator_webhook_requests_total{outcome=\"denied\"} 1\n",
            "hsm_operator_webhook_requests_total{outcome=\"invalid\"} 0\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"0.0005\"} 0\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"0.001\"} 1\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"0.005\"} 2\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"0.025\"} 2\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"0.05\"} 3\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "hsm_operator_webhook_duration_seconds_sum 0.0348\n",
            "hsm_operator_webhook_duration_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.count(Outcome::Injected), 2);
        assert_eq!(m.quantile_bound(0.5), Some(0.005));
        assert_eq!(m.quantile_bound(0.99), Some(0.05));
        assert_eq!(m.quantile_bound(0.0), Some(0.001));
        m.observe(Outcome::Injected, Duration::from_secs(3));
        assert_eq!(m.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(WebhookMetrics::default().quantile_bound(0.5), None);
    }
}
