//! Counters the engine keeps, named after otelcol's tail_sampling
//! self-metrics (prefix `otelcol_processor_tail_sampling_`), so the collector
//! can export them unchanged.

use std::sync::Arc;

use crate::decision::{Decision, FinalDecision};
use crate::engine::DecisionTrigger;

/// A histogram with fixed bucket bounds: `counts[i]` counts values `<=
/// bounds[i]` (and above the previous bound); the last count is the overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<u64>,
    sum: u64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these (ascending) upper bounds.
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
            count: 0,
        }
    }

    /// Adds one observation.
    pub fn record(&mut self, value: u64) {
        let bucket = self.bounds.partition_point(|&b| b < value);
        self.counts[bucket] += 1;
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    /// The bucket upper bounds.
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// Counts per bucket, one more than [`Histogram::bounds`] (overflow last).
    pub fn bucket_counts(&self) -> &[u64] {
        &self.counts
    }

    /// Sum of all observations.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Bounds of `sampling_late_span_age`, in seconds.
pub const LATE_SPAN_AGE_BOUNDS_SECS: &[u64] = &[0, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/// Bounds of the decision lateness histogram, in milliseconds.
pub const DECISION_LATENESS_BOUNDS_MS: &[u64] =
    &[0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// How often one top-level policy returned each decision
/// (`count_traces_sampled{policy, sampled}` and the decision reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStats {
    /// The policy's name.
    pub name: Arc<str>,
    /// Returned [`Decision::Sampled`].
    pub sampled: u64,
    /// Returned [`Decision::NotSampled`].
    pub not_sampled: u64,
    /// Returned [`Decision::InvertedSampled`] (`sampled="true"` in otelcol).
    pub inverted_sampled: u64,
    /// Returned [`Decision::InvertedNotSampled`] (`sampled="false"`).
    pub inverted_not_sampled: u64,
    /// Returned [`Decision::Dropped`] (`sampled="false"`, `decision="dropped"`).
    pub dropped: u64,
}

impl PolicyStats {
    fn new(name: Arc<str>) -> Self {
        PolicyStats {
            name,
            sampled: 0,
            not_sampled: 0,
            inverted_sampled: 0,
            inverted_not_sampled: 0,
            dropped: 0,
        }
    }

    /// Traces this policy said to sample (`sampled="true"`).
    pub fn sampled_label_true(&self) -> u64 {
        self.sampled + self.inverted_sampled
    }

    /// Traces this policy said not to sample (`sampled="false"`).
    pub fn sampled_label_false(&self) -> u64 {
        self.not_sampled + self.inverted_not_sampled + self.dropped
    }
}

/// Final decisions by outcome (`global_count_traces_sampled`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Traces sampled.
    pub sampled: u64,
    /// Traces not sampled.
    pub not_sampled: u64,
    /// Traces dropped by a `drop` policy.
    pub dropped: u64,
}

/// Why decisions were made, by [`DecisionTrigger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TriggerCounts {
    /// `decision_wait` elapsed.
    pub decision_wait: u64,
    /// `decision_wait_after_root_received` elapsed.
    pub root_span_received: u64,
    /// Decided early: `num_traces` was full.
    pub trace_limit: u64,
    /// Decided early: `max_memory_mib` was exceeded.
    pub memory_limit: u64,
    /// Decided at once: the trace exceeded `maximum_trace_size_bytes`.
    pub trace_size_limit: u64,
    /// Decided by [`Sampler::flush_all`](crate::Sampler::flush_all).
    pub shutdown: u64,
}

/// Late spans: spans of traces already decided, handled from the decision
/// caches (`early_releases_from_cache_decision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateSpanCounts {
    /// Late spans forwarded because their trace was sampled.
    pub sampled: u64,
    /// Late spans discarded because their trace was not sampled.
    pub not_sampled: u64,
}

/// Everything the engine counts. Counters are cumulative; the `*_on_memory`
/// values are gauges of the current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerStats {
    /// Per top-level policy decisions, in config order
    /// (`count_traces_sampled{policy, sampled}`).
    pub policies: Vec<PolicyStats>,
    /// Final decisions (`global_count_traces_sampled{sampled}`).
    pub global: DecisionCounts,
    /// Decisions by what triggered them.
    pub triggers: TriggerCounts,
    /// Traces seen for the first time (`new_trace_id_received`).
    pub new_trace_id_received: u64,
    /// Traces removed without a decision (`sampling_trace_dropped_too_early`);
    /// only `drop_pending_traces_on_shutdown` does that here.
    pub sampling_trace_dropped_too_early: u64,
    /// Traces decided before their wait was over because a limit was reached
    /// (`num_traces`, `max_memory_mib`, `maximum_trace_size_bytes`); the same
    /// traces are also in [`SamplerStats::triggers`].
    pub traces_decided_early: u64,
    /// Late spans handled from the decision caches.
    pub late_spans: LateSpanCounts,
    /// Seconds between a trace's decision and each of its late spans
    /// (`sampling_late_span_age`).
    pub late_span_age_secs: Histogram,
    /// Milliseconds between when a decision was due and when `tick` made it
    /// (how late the decision loop runs).
    pub decision_lateness_ms: Histogram,
    /// Policy evaluation errors (`sampling_policy_evaluation_error`); a trace
    /// whose buffered spans cannot be decoded counts here and is not sampled.
    pub policy_evaluation_error: u64,
    /// Buffered traces (`sampling_traces_on_memory`).
    pub traces_on_memory: u64,
    /// Buffered spans.
    pub spans_on_memory: u64,
    /// Bytes accounted to buffered traces (what `max_memory_mib` limits).
    pub bytes_on_memory: u64,
}

impl SamplerStats {
    pub(crate) fn new(policy_names: &[Arc<str>]) -> Self {
        SamplerStats {
            policies: policy_names
                .iter()
                .map(|n| PolicyStats::new(n.clone()))
                .collect(),
            global: DecisionCounts::default(),
            triggers: TriggerCounts::default(),
            new_trace_id_received: 0,
            sampling_trace_dropped_too_early: 0,
            traces_decided_early: 0,
            late_spans: LateSpanCounts::default(),
            late_span_age_secs: Histogram::new(LATE_SPAN_AGE_BOUNDS_SECS),
            decision_lateness_ms: Histogram::new(DECISION_LATENESS_BOUNDS_MS),
            policy_evaluation_error: 0,
            traces_on_memory: 0,
            spans_on_memory: 0,
            bytes_on_memory: 0,
        }
    }

    pub(crate) fn record_policy_decision(&mut self, index: usize, decision: Decision) {
        let Some(p) = self.policies.get_mut(index) else {
            return;
        };
        match decision {
            Decision::Sampled => p.sampled += 1,
            Decision::NotSampled => p.not_sampled += 1,
            Decision::InvertedSampled => p.inverted_sampled += 1,
            Decision::InvertedNotSampled => p.inverted_not_sampled += 1,
            Decision::Dropped => p.dropped += 1,
        }
    }

    pub(crate) fn record_final(&mut self, decision: FinalDecision, trigger: DecisionTrigger) {
        match decision {
            FinalDecision::Sampled => self.global.sampled += 1,
            FinalDecision::NotSampled => self.global.not_sampled += 1,
            FinalDecision::Dropped => self.global.dropped += 1,
        }
        let t = &mut self.triggers;
        match trigger {
            DecisionTrigger::DecisionWait => t.decision_wait += 1,
            DecisionTrigger::RootSpanReceived => t.root_span_received += 1,
            DecisionTrigger::TraceLimit => t.trace_limit += 1,
            DecisionTrigger::MemoryLimit => t.memory_limit += 1,
            DecisionTrigger::TraceSizeLimit => t.trace_size_limit += 1,
            DecisionTrigger::Shutdown => t.shutdown += 1,
        }
        if trigger.is_early() {
            self.traces_decided_early += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::new(&[1, 5, 10]);
        for v in [0, 1, 2, 5, 6, 10, 11, 1000] {
            h.record(v);
        }
        assert_eq!(h.bucket_counts(), &[2, 2, 2, 2]);
        assert_eq!(h.count(), 8);
        assert_eq!(h.sum(), 1035);
    }
}
