//! The Prometheus text format (0.0.4) as the operator writes it: family headers, and a histogram
//! with fixed buckets on atomics that both latency families (reconcile, webhook review) use.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Appends the `# HELP` and `# TYPE` lines of family `name` (`kind`: counter, gauge, histogram).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (seconds), ascending.
    bounds: &'static [f64],
    /// Cumulative: bucket i counts observations <= bounds[i].
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds (an integer, so it can be an atomic).
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, counter) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends the family `name` (HELP, TYPE, buckets, sum, count) in the text format 0.0.4.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        for (bound, counter) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1) of the observations so far, in
    /// seconds (`None` before any, `+Inf` past the last bucket).
    #[cfg(test)]
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * count as f64).ceil().max(1.0) as u64;
        Some(
            self.bounds
                .iter()
                .zip(&self.buckets)
                .find(|(_, n)| n.load(Ordering::Relaxed) >= rank)
                .map_or(f64::INFINITY, |(bound, _)| *bound),
        )
    }
}
