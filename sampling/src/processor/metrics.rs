//! The processor's self-metrics: otelcol's `tail_sampling` series (prefix
//! `otelcol_processor_tail_sampling_`) plus ours, fed from each shard's
//! [`SamplerStats`] as deltas.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use collector_core::observe::{Counter, Histogram, MetricsRegistry};

use crate::stats::{
    DECISION_LATENESS_BOUNDS_MS, Histogram as EngineHistogram, LATE_SPAN_AGE_BOUNDS_SECS,
    PolicyStats, SamplerStats,
};

const PREFIX: &str = "otelcol_processor_tail_sampling_";

/// The decisions a policy can return, with otelcol's `sampled` label and ours,
/// `decision`.
const DECISIONS: [(&str, &str); 5] = [
    ("sampled", "true"),
    ("inverted_sampled", "true"),
    ("not_sampled", "false"),
    ("inverted_not_sampled", "false"),
    ("dropped", "false"),
];

fn decision_counts(p: &PolicyStats) -> [u64; 5] {
    [
        p.sampled,
        p.inverted_sampled,
        p.not_sampled,
        p.inverted_not_sampled,
        p.dropped,
    ]
}

/// Why a trace was decided before its wait was over (`reason` label).
const EARLY_REASONS: [&str; 3] = ["num_traces", "max_memory_mib", "maximum_trace_size_bytes"];

/// The self-metrics of one processor instance. Counters and histograms are
/// shared by its shards; the gauges sum what the shards publish.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// `count_traces_sampled{policy, sampled, decision}`, by policy then decision.
    policy: Vec<[Counter; 5]>,
    global_sampled: Counter,
    global_not_sampled: Counter,
    new_trace_id_received: Counter,
    decision_latency: Histogram,
    late_span_age: Histogram,
    dropped_too_early: Counter,
    policy_evaluation_error: Counter,
    early_release_sampled: Counter,
    early_release_not_sampled: Counter,
    decided_early: [Counter; 3],
    /// Spans accepted and then lost (`otelcol_processor_dropped_items`).
    pub(crate) dropped_items: Counter,
    /// Spans refused to the sender (`otelcol_processor_refused_spans`).
    pub(crate) refused_spans: Counter,
}

/// What a shard publishes for the gauges, read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct ShardGauges {
    /// Undecided traces.
    pub(crate) traces: AtomicU64,
    /// Bytes of buffered spans, as `max_memory_mib` counts them.
    pub(crate) bytes: AtomicU64,
    /// Spans the shard buffers (sampled spans waiting for delivery are in
    /// the output queues' budget). What is lost if the shard is stopped.
    pub(crate) held_spans: AtomicU64,
}

impl ShardGauges {
    pub(crate) fn clear(&self) {
        self.traces.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.held_spans.store(0, Ordering::Relaxed);
    }
}

fn to_f64(bounds: &[u64]) -> Vec<f64> {
    bounds.iter().map(|&b| b as f64).collect()
}

impl Metrics {
    /// Registers the series of processor `id` with the policies `policies`.
    pub(crate) fn register<'a>(
        registry: &MetricsRegistry,
        id: &str,
        policies: impl Iterator<Item = &'a str>,
        gauges: &[Arc<ShardGauges>],
    ) -> Self {
        let name = |suffix: &str| format!("{PREFIX}{suffix}");
        let proc = [("processor", id)];
        let policy = policies
            .map(|policy| {
                DECISIONS.map(|(decision, sampled)| {
                    registry.counter(
                        &name("count_traces_sampled"),
                        "Count of traces that each policy decided to sample or not",
                        &[
                            ("processor", id),
                            ("policy", policy),
                            ("sampled", sampled),
                            ("decision", decision),
                        ],
                    )
                })
            })
            .collect();
        let global = |sampled: &str| {
            registry.counter(
                &name("global_count_traces_sampled"),
                "Global count of traces sampled by at least one policy",
                &[("processor", id), ("sampled", sampled)],
            )
        };
        let early_release = |sampled: &str| {
            registry.counter(
                &name("early_releases_from_cache_decision"),
                "Spans released (sampled) or dropped (not sampled) at once because their trace was already decided",
                &[("processor", id), ("sampled", sampled)],
            )
        };
        let metrics = Metrics {
            policy,
            global_sampled: global("true"),
            global_not_sampled: global("false"),
            new_trace_id_received: registry.counter(
                &name("new_trace_id_received"),
                "Counts the arrival of new traces",
                &proc,
            ),
            decision_latency: registry.histogram(
                &name("sampling_decision_latency"),
                "Milliseconds between when a trace's decision was due and when it was made",
                &proc,
                &to_f64(DECISION_LATENESS_BOUNDS_MS),
            ),
            late_span_age: registry.histogram(
                &name("sampling_late_span_age"),
                "Time (in seconds) from the sampling decision to the arrival of a late span",
                &proc,
                &to_f64(LATE_SPAN_AGE_BOUNDS_SECS),
            ),
            dropped_too_early: registry.counter(
                &name("sampling_trace_dropped_too_early"),
                "Count of traces that needed to be dropped before the configured wait time",
                &proc,
            ),
            policy_evaluation_error: registry.counter(
                &name("sampling_policy_evaluation_error"),
                "Count of sampling policy evaluation errors",
                &proc,
            ),
            early_release_sampled: early_release("true"),
            early_release_not_sampled: early_release("false"),
            decided_early: EARLY_REASONS.map(|reason| {
                registry.counter(
                    &name("sampling_traces_decided_early"),
                    "Traces decided before their wait was over because a limit was reached",
                    &[("processor", id), ("reason", reason)],
                )
            }),
            dropped_items: registry.counter(
                "otelcol_processor_dropped_items",
                "Number of items the processor accepted and then dropped.",
                &[("processor", id), ("otel_signal", "traces")],
            ),
            refused_spans: registry.counter(
                "otelcol_processor_refused_spans",
                "Number of items the processor refused to accept.",
                &proc,
            ),
        };
        let sum = |read: fn(&ShardGauges) -> u64| {
            let gauges: Vec<Arc<ShardGauges>> = gauges.to_vec();
            move || gauges.iter().map(|g| read(g)).sum::<u64>() as f64
        };
        registry.gauge_fn(
            &name("sampling_traces_on_memory"),
            "Tracks the number of traces current on memory",
            &proc,
            sum(|g| g.traces.load(Ordering::Relaxed)),
        );
        registry.gauge_fn(
            &name("sampling_buffered_bytes"),
            "Bytes of buffered spans, as max_memory_mib counts them",
            &proc,
            sum(|g| g.bytes.load(Ordering::Relaxed)),
        );
        metrics
    }
}

/// What one shard exported so far, to turn its cumulative [`SamplerStats`]
/// into increments of the shared series.
#[derive(Debug)]
pub(crate) struct StatsExport {
    policy: Vec<[u64; 5]>,
    global_sampled: u64,
    global_not_sampled: u64,
    new_trace_id_received: u64,
    dropped_too_early: u64,
    policy_evaluation_error: u64,
    early_release: [u64; 2],
    decided_early: [u64; 3],
    decision_latency: HistogramExport,
    late_span_age: HistogramExport,
}

impl StatsExport {
    pub(crate) fn new(policies: usize) -> Self {
        StatsExport {
            policy: vec![[0; 5]; policies],
            global_sampled: 0,
            global_not_sampled: 0,
            new_trace_id_received: 0,
            dropped_too_early: 0,
            policy_evaluation_error: 0,
            early_release: [0; 2],
            decided_early: [0; 3],
            decision_latency: HistogramExport::new(DECISION_LATENESS_BOUNDS_MS),
            late_span_age: HistogramExport::new(LATE_SPAN_AGE_BOUNDS_SECS),
        }
    }

    /// Adds what changed since the last call to the shared series.
    pub(crate) fn export(&mut self, stats: &SamplerStats, m: &Metrics) {
        for ((last, now), counters) in self.policy.iter_mut().zip(&stats.policies).zip(&m.policy) {
            let now = decision_counts(now);
            for i in 0..now.len() {
                bump(&counters[i], &mut last[i], now[i]);
            }
        }
        bump(
            &m.global_sampled,
            &mut self.global_sampled,
            stats.global.sampled,
        );
        bump(
            &m.global_not_sampled,
            &mut self.global_not_sampled,
            stats.global.not_sampled + stats.global.dropped,
        );
        bump(
            &m.new_trace_id_received,
            &mut self.new_trace_id_received,
            stats.new_trace_id_received,
        );
        bump(
            &m.dropped_too_early,
            &mut self.dropped_too_early,
            stats.sampling_trace_dropped_too_early,
        );
        bump(
            &m.policy_evaluation_error,
            &mut self.policy_evaluation_error,
            stats.policy_evaluation_error,
        );
        bump(
            &m.early_release_sampled,
            &mut self.early_release[0],
            stats.late_spans.sampled,
        );
        bump(
            &m.early_release_not_sampled,
            &mut self.early_release[1],
            stats.late_spans.not_sampled,
        );
        let t = &stats.triggers;
        for (i, now) in [t.trace_limit, t.memory_limit, t.trace_size_limit]
            .into_iter()
            .enumerate()
        {
            bump(&m.decided_early[i], &mut self.decided_early[i], now);
        }
        self.decision_latency
            .export(&stats.decision_lateness_ms, &m.decision_latency);
        self.late_span_age
            .export(&stats.late_span_age_secs, &m.late_span_age);
    }
}

fn bump(counter: &Counter, last: &mut u64, now: u64) {
    if now > *last {
        counter.add(now - *last);
        *last = now;
    }
}

/// Moves new observations of an engine histogram (integer values, fixed
/// bounds) into a registry histogram with the same bounds: each new
/// observation is recorded once, in its own bucket, with values chosen
/// within the buckets so that the sum comes out exact too.
#[derive(Debug)]
struct HistogramExport {
    bounds: &'static [u64],
    counts: Vec<u64>,
    sum: u64,
}

impl HistogramExport {
    fn new(bounds: &'static [u64]) -> Self {
        HistogramExport {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
        }
    }

    fn export(&mut self, engine: &EngineHistogram, target: &Histogram) {
        let counts = engine.bucket_counts();
        if counts.len() != self.counts.len() || engine.count() == self.counts.iter().sum::<u64>() {
            return;
        }
        let deltas: Vec<u64> = counts
            .iter()
            .zip(&self.counts)
            .map(|(now, last)| now.saturating_sub(*last))
            .collect();
        let range = |i: usize| {
            let lower = if i == 0 { 0 } else { self.bounds[i - 1] + 1 };
            let upper = self.bounds.get(i).copied().unwrap_or(u64::MAX);
            (lower, upper)
        };
        let minimum: u64 = deltas
            .iter()
            .enumerate()
            .map(|(i, &d)| d.saturating_mul(range(i).0))
            .fold(0u64, u64::saturating_add);
        let mut rest = engine
            .sum()
            .saturating_sub(self.sum)
            .saturating_sub(minimum);
        for (i, &d) in deltas.iter().enumerate() {
            let (lower, upper) = range(i);
            for _ in 0..d {
                let extra = rest.min(upper - lower);
                rest -= extra;
                target.record((lower + extra) as f64);
            }
        }
        self.counts.copy_from_slice(counts);
        self.sum = engine.sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_export_keeps_buckets_and_sum_exact() {
        let registry = MetricsRegistry::new();
        let bounds: &'static [u64] = &[0, 1, 5, 10];
        let target = registry.histogram("h", "", &[], &to_f64(bounds));
        let mut engine = EngineHistogram::new(bounds);
        let mut export = HistogramExport::new(bounds);
        for v in [0, 3, 4, 7, 100] {
            engine.record(v);
        }
        export.export(&engine, &target);
        assert_eq!(target.count(), 5);
        assert_eq!(target.sum(), 114.0);
        engine.record(1);
        engine.record(10);
        export.export(&engine, &target);
        export.export(&engine, &target);
        assert_eq!(target.count(), 7);
        assert_eq!(target.sum(), 125.0);
        let text = registry.render_prometheus();
        for line in [
            "h_bucket{le=\"0\"} 1",
            "h_bucket{le=\"1\"} 2",
            "h_bucket{le=\"5\"} 4",
            "h_bucket{le=\"10\"} 6",
            "h_bucket{le=\"+Inf\"} 7",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
