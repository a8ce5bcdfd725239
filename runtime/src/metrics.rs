//! Counters and histograms the node keeps for `GET /metrics`, and the
//! Prometheus text format they are rendered in.
//!
//! Hand-written: the format is a few lines of text, and every value here is
//! an atomic the hot paths bump without a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets: 50 µs to 5 s.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A latency histogram with the fixed buckets of [`LATENCY_BUCKETS_SECONDS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative).
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`LATENCY_BUCKETS_SECONDS`],
    /// cumulative (as Prometheus reports them).
    pub cumulative: Vec<u64>,
    /// Every observation.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_micros: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS_SECONDS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                total += bucket.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// What the driver counts, shared with the HTTP API (`GET /metrics`).
#[derive(Debug, Default)]
pub struct DriverMetrics {
    /// Proposals (writes) submitted.
    pub proposals: AtomicU64,
    /// Proposals answered `Ok` (committed and applied).
    pub proposals_applied: AtomicU64,
    /// Reads asked, by consistency: linearizable, lease, session, stale.
    pub reads: [AtomicU64; 4],
    /// Times this node became leader.
    pub elections_won: AtomicU64,
    /// Time from a proposal's submission to its answer.
    pub proposal_latency: Histogram,
    /// The storage's own counters (fsyncs, snapshots, segments).
    pub storage: std::sync::Arc<crate::storage::StorageStats>,
}

/// The consistency names, in the order of [`DriverMetrics::reads`].
pub const READ_CONSISTENCIES: [&str; 4] = ["linearizable", "lease", "session", "stale"];

/// Writes Prometheus text exposition (format 0.0.4).
#[derive(Debug, Default)]
pub struct MetricsText {
    text: String,
}

impl MetricsText {
    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample, with labels given as `(name, value)` pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (position, (label, text)) in labels.iter().enumerate() {
                if position > 0 {
                    self.text.push(',');
                }
                let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{label}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A histogram family (in seconds) from `snapshot`.
    pub fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) -> &mut Self {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(&snapshot.cumulative) {
            self.sample(&bucket, &[("le", &bound.to_string())], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], snapshot.count);
        let sum_seconds = snapshot.sum_micros as f64 / 1_000_000.0;
        self.sample(&format!("{name}_sum"), &[], sum_seconds);
        self.sample(&format!("{name}_count"), &[], snapshot.count)
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(40));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(9));
        let mut text = MetricsText::default();
        text.histogram("x_seconds", "test", &histogram.snapshot());
        let text = text.finish();
        assert!(text.contains("x_seconds_bucket{le=\"0.00005\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut text = MetricsText::default();
        text.sample("m", &[("a", "x\"y\\z")], 1);
        assert_eq!(text.finish(), "m{a=\"x\\\"y\\\\z\"} 1\n");
    }
}
