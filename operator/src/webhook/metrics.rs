//! The webhook's metrics, in the Prometheus text format, for the operator's `/metrics`:
//! `hsm_operator_webhook_requests_total{outcome}` (injected | skipped | denied | invalid) and the
//! histogram `hsm_operator_webhook_duration_seconds` (body read to response ready, per review).
//!
//! Registering: create one `Arc<WebhookMetrics>`, pass it in `WebhookConfig::metrics`, and append
//! `webhook_metrics.render()` to the operator's exposition.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::exposition::{header, Histogram};

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
    const ALL: [Outcome; 4] = [Outcome::Injected, Outcome::Skipped, Outcome::Denied, Outcome::Invalid];

    fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

#[derive(Debug)]
pub struct WebhookMetrics {
    outcomes: [AtomicU64; 4],
    duration: Histogram,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        WebhookMetrics {
            outcomes: Default::default(),
            duration: Histogram::new(&BUCKETS),
        }
    }
}

impl WebhookMetrics {
    /// One review took `elapsed` and ended with `outcome`.
    pub fn observe(&self, outcome: Outcome, elapsed: Duration) {
        let slot = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[slot].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// Reviews counted so far with `outcome`.
    #[cfg(test)]
    pub fn count(&self, outcome: Outcome) -> u64 {
        let slot = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[slot].load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding quantile `q` of the review durations so far.
    #[cfg(test)]
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        self.duration.quantile_bound(q)
    }

    /// The text exposition (format 0.0.4) of the webhook's families.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        header(
            &mut out,
            "hsm_operator_webhook_requests_total",
            "counter",
            "Admission reviews by outcome.",
        );
        for (outcome, counter) in Outcome::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "hsm_operator_webhook_requests_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        self.duration.render(
            &mut out,
            "hsm_operator_webhook_duration_seconds",
            "Time to answer one admission review.",
        );
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
