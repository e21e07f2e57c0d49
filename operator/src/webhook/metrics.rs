//! The webhook's metrics, for the operator's `/metrics`:
//! `hsm_operator_webhook_requests_total{outcome}` (injected | skipped | denied | invalid) and the
//! histogram `hsm_operator_webhook_duration_seconds` (body read to response ready, per review).
//!
//! Registering: create one `Arc<WebhookMetrics>`, pass it in `WebhookConfig::metrics`, and
//! `register` it in the operator's `prometheus_client` registry (`metrics.rs` does).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl From<Outcome> for OutcomeLabels {
    fn from(outcome: Outcome) -> Self {
        OutcomeLabels {
            outcome: outcome.label(),
        }
    }
}

#[derive(Debug)]
pub struct WebhookMetrics {
    requests: Family<OutcomeLabels, Counter>,
    duration: Histogram,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let requests = Family::<OutcomeLabels, Counter>::default();
        // Every outcome is exported from the start, at 0.
        for outcome in Outcome::ALL {
            let _ = requests.get_or_create(&outcome.into());
        }
        WebhookMetrics {
            requests,
            duration: Histogram::new(BUCKETS),
        }
    }
}

impl WebhookMetrics {
    /// One review took `elapsed` and ended with `outcome`.
    pub fn observe(&self, outcome: Outcome, elapsed: Duration) {
        self.requests.get_or_create(&outcome.into()).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Adds the webhook's families to `registry` (they share their values with `self`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hsm_operator_webhook_requests",
            "Admission reviews by outcome",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "hsm_operator_webhook_duration",
            "Time to answer one admission review",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    /// Reviews counted so far with `outcome`.
    #[cfg(test)]
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.requests.get(&outcome.into()).map_or(0, |c| c.get())
    }

    /// The webhook's families alone, as OpenMetrics text.
    #[cfg(test)]
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        crate::metrics::render(&registry)
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1) of the review durations so far,
    /// in seconds (`None` before any, `+Inf` past the last bucket), read from the exposition.
    #[cfg(test)]
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let text = self.render();
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("hsm_operator_webhook_duration_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (bound, count) = l.split_once("\"} ")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count.parse().ok()?))
            })
            .collect();
        let count = buckets.last()?.1;
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * count as f64).ceil().max(1.0) as u64;
        buckets.iter().find(|(_, n)| *n >= rank).map(|(bound, _)| *bound)
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
            "hsm_operator_webhook_duration_seconds_bucket{le=\"1.0\"} 3\n",
            "hsm_operator_webhook_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "hsm_operator_webhook_duration_seconds_count 3\n",
            "# TYPE hsm_operator_webhook_requests counter\n",
            "# TYPE hsm_operator_webhook_duration_seconds histogram\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("hsm_operator_webhook_duration_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .expect("a _sum sample");
        assert!((sum - 0.0348).abs() < 1e-9, "sum {sum}");
        let bounds = text
            .lines()
            .filter(|l| l.starts_with("hsm_operator_webhook_duration_seconds_bucket"))
            .count();
        assert_eq!(bounds, BUCKETS.len() + 1, "the twelve bounds and +Inf:\n{text}");
        assert_eq!(m.count(Outcome::Injected), 2);
        assert_eq!(m.quantile_bound(0.5), Some(0.005));
        assert_eq!(m.quantile_bound(0.99), Some(0.05));
        assert_eq!(m.quantile_bound(0.0), Some(0.001));
        m.observe(Outcome::Injected, Duration::from_secs(3));
        assert_eq!(m.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(WebhookMetrics::default().quantile_bound(0.5), None);
    }
}
