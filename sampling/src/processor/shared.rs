//! What the processor, its shards and their delivery tasks share: the next
//! stage, self-metrics, and the count of spans lost after acceptance.

use std::sync::atomic::{AtomicU64, Ordering};

use collector_core::consumer::{BoxConsumer, NextStage};
use collector_core::observe::RateLimitedLog;

use super::metrics::Metrics;

/// State shared by the processor, its shards and their delivery tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The processor's id, for logs.
    pub(crate) id: String,
    /// Where sampled spans go; also holds the shutdown deadline.
    pub(crate) next: NextStage,
    /// Self-metrics.
    pub(crate) metrics: Metrics,
    /// Spans this instance dropped after accepting them.
    pub(crate) dropped_total: AtomicU64,
    drop_log: RateLimitedLog,
}

impl Shared {
    pub(crate) fn new(id: String, next: BoxConsumer, metrics: Metrics) -> Self {
        Shared {
            next: NextStage::new(id.clone(), next),
            id,
            metrics,
            dropped_total: AtomicU64::new(0),
            drop_log: RateLimitedLog::default(),
        }
    }

    /// Counts and logs (rate-limited) spans lost after they were accepted.
    pub(crate) fn dropped(&self, spans: usize, reason: &str) {
        if spans == 0 {
            return;
        }
        self.metrics.dropped_items.add(spans as u64);
        self.dropped_total
            .fetch_add(spans as u64, Ordering::Relaxed);
        if let Some(suppressed) = self.drop_log.check() {
            tracing::error!(
                processor = %self.id,
                spans,
                suppressed,
                "tail_sampling dropped sampled spans: {reason}"
            );
        }
    }
}
