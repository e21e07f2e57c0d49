//! The operator's Prometheus metrics, one `prometheus_client` registry rendered as OpenMetrics
//! text on `/metrics`:
//! `hsm_operator_reconciles_total`, `hsm_operator_reconcile_failures_total{reason}`,
//! `hsm_operator_reconcile_duration_seconds` (histogram), `hsm_operator_leader` (gauge),
//! `hsm_operator_partition_pods{namespace,partition,state}` (gauge, the leader's count of
//! injected pods by generation: `partition_pods/`), and the webhook's families
//! (`webhook/metrics.rs`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::webhook::WebhookMetrics;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the duration histogram's buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A family announced (HELP, TYPE) even before its first series: prometheus-client leaves an
/// empty family off the page, so a dashboard or alert could not tell "none yet" from "not
/// exported" (a follower has no `hsm_operator_partition_pods`, no replica has failed yet).
#[derive(Debug)]
struct Announced<M>(M);

impl<M: EncodeMetric> EncodeMetric for Announced<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    /// A short, fixed value (`Error::metric_reason`): the label stays bounded.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    /// The partition's namespace and name: one series per partition and state, bounded by the
    /// partitions (never a pod's name).
    namespace: String,
    partition: String,
    /// `current`, `behind` or `unknown`.
    state: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    /// The injection webhook's reviews (registered here too, so one `/metrics` shows both).
    pub webhook: Arc<WebhookMetrics>,
    reconciles: Counter,
    failures: Family<FailureLabels, Counter>,
    duration: Histogram,
    leader: Gauge,
    partition_pods: Family<PodLabels, Gauge>,
    /// Holds clones of the metrics above (they share their values); built once, read by
    /// `render` only, so it needs no lock.
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let webhook = Arc::new(WebhookMetrics::default());
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Histogram::new(BUCKETS);
        let leader = Gauge::default();
        let partition_pods = Family::<PodLabels, Gauge>::default();
        let mut registry = Registry::default();
        // Names without the `_total`/unit suffixes: the encoder appends them.
        registry.register(
            "hsm_operator_reconciles",
            "Reconciliations of HsmPartitions",
            reconciles.clone(),
        );
        registry.register(
            "hsm_operator_reconcile_failures",
            "Failed reconciliations by reason",
            Announced(failures.clone()),
        );
        registry.register_with_unit(
            "hsm_operator_reconcile_duration",
            "Time spent in one reconciliation",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "hsm_operator_leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "hsm_operator_partition_pods",
            "Running injected pods of a partition by the generations their sidecar reports: current, behind (an older credential or configuration than the partition's status), unknown (no answer); counted by the leader every 60 s",
            Announced(partition_pods.clone()),
        );
        webhook.register(&mut registry);
        Metrics {
            webhook,
            reconciles,
            failures,
            duration,
            leader,
            partition_pods,
            registry,
        }
    }
}

impl Metrics {
    /// One reconcile finished after `elapsed`.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// One reconcile failed for `reason` (a short, fixed label value).
    pub fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { reason }).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The pods of partition `namespace/partition` by state (`(state, count)`).
    pub fn set_partition_pods(
        &self,
        namespace: &str,
        partition: &str,
        counts: impl IntoIterator<Item = (&'static str, u64)>,
    ) {
        for (state, n) in counts {
            let labels = PodLabels {
                namespace: namespace.to_owned(),
                partition: partition.to_owned(),
                state,
            };
            self.partition_pods
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drops the series of a partition that is gone.
    pub fn forget_partition_pods(&self, namespace: &str, partition: &str) {
        for state in ["current", "behind", "unknown"] {
            self.partition_pods.remove(&PodLabels {
                namespace: namespace.to_owned(),
                partition: partition.to_owned(),
                state,
            });
        }
    }

    /// Drops every series (this replica stopped counting: it no longer leads).
    pub fn clear_partition_pods(&self) {
        self.partition_pods.clear();
    }

    /// The OpenMetrics text exposition (1.0.0, ending in `# EOF`), of type [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// `registry` as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the encoder fails only when its writer does.
    let _ = encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series ` (name and labels as written).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

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
        for line in [
            "# TYPE hsm_operator_reconciles counter\n",
            "\nhsm_operator_reconciles_total 2\n",
            "# TYPE hsm_operator_reconcile_failures counter\n",
            "hsm_operator_reconcile_failures_total{reason=\"conflict\"} 2\n",
            "hsm_operator_reconcile_failures_total{reason=\"forbidden\"} 1\n",
            "# TYPE hsm_operator_reconcile_duration_seconds histogram\n",
            "# UNIT hsm_operator_reconcile_duration_seconds seconds\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 0\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"0.01\"} 1\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"0.25\"} 1\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"10.0\"} 2\n",
            "hsm_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "hsm_operator_reconcile_duration_seconds_count 2\n",
            "# TYPE hsm_operator_leader gauge\n",
            "hsm_operator_leader 1\n",
            // The webhook's families are on the same page.
            "hsm_operator_webhook_requests_total{outcome=\"injected\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let sum = sample(&text, "hsm_operator_reconcile_duration_seconds_sum").expect("a _sum sample");
        assert!((sum - 0.307).abs() < 1e-9, "sum {sum}");
        // Exactly the ten bounds and +Inf, in order.
        let bounds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("hsm_operator_reconcile_duration_seconds_bucket{le=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            bounds,
            ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "10.0", "+Inf"]
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        m.set_leader(false);
        assert_eq!(sample(&m.render(), "hsm_operator_leader"), Some(0.0));
    }

    #[test]
    fn partition_pods_by_state() {
        let m = Metrics::default();
        m.set_partition_pods("team-a", "payments", [("current", 3), ("behind", 1), ("unknown", 0)]);
        m.set_partition_pods("team-b", "audit", [("current", 2), ("behind", 0), ("unknown", 5)]);
        let text = m.render();
        assert!(text.contains("# TYPE hsm_operator_partition_pods gauge\n"), "{text}");
        let series = |ns: &str, p: &str, state: &str| {
            sample(
                &text,
                &format!("hsm_operator_partition_pods{{namespace=\"{ns}\",partition=\"{p}\",state=\"{state}\"}}"),
            )
        };
        assert_eq!(series("team-a", "payments", "current"), Some(3.0));
        assert_eq!(series("team-a", "payments", "behind"), Some(1.0));
        assert_eq!(series("team-a", "payments", "unknown"), Some(0.0));
        assert_eq!(series("team-b", "audit", "unknown"), Some(5.0));
        // A new count replaces the old one.
        m.set_partition_pods("team-a", "payments", [("current", 4), ("behind", 0), ("unknown", 0)]);
        let text = m.render();
        assert!(
            text.contains(
                "hsm_operator_partition_pods{namespace=\"team-a\",partition=\"payments\",state=\"behind\"} 0\n"
            ),
            "{text}"
        );
        m.forget_partition_pods("team-a", "payments");
        let text = m.render();
        assert!(!text.contains("payments"), "{text}");
        assert!(text.contains("partition=\"audit\""), "{text}");
        m.clear_partition_pods();
        assert!(!m.render().contains("hsm_operator_partition_pods{"));
    }

    #[test]
    fn failures_and_pods_are_announced_before_the_first() {
        // A follower, or the leader before its first count / failure: HELP and TYPE, no series.
        let m = Metrics::default();
        let text = m.render();
        for line in [
            "# HELP hsm_operator_reconcile_failures Failed reconciliations by reason.\n",
            "# TYPE hsm_operator_reconcile_failures counter\n",
            "# TYPE hsm_operator_partition_pods gauge\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("hsm_operator_reconcile_failures_total"), "{text}");
        assert!(!text.contains("hsm_operator_partition_pods{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(sample(&text, "hsm_operator_reconciles_total"), Some(0.0));
        m.failed("timeout");
        let text = m.render();
        assert!(
            text.contains("# TYPE hsm_operator_reconcile_failures counter\n"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "hsm_operator_reconcile_failures_total{reason=\"timeout\"}"),
            Some(1.0)
        );
    }
}
