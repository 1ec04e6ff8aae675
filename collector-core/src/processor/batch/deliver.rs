//! What the workers share: settings, the buffer budget, self-metrics, and
//! delivery to the next stage (a [`NextStage`], which retries retryable
//! refusals).

use super::shard::{Chunk, Shard};
use crate::consumer::{BoxConsumer, NextStage};
use crate::observe::{Counter, Gauge, Histogram, MetricsRegistry, RateLimitedLog};
use crate::pdata::{Payload, Signal, Telemetry};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bounds of `otelcol_processor_batch_batch_send_size`, as otelcol declares them.
const SEND_SIZE_BOUNDS: &[f64] = &[
    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0,
    6000.0, 7000.0, 8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
];
/// Bounds of `otelcol_processor_batch_batch_send_size_bytes`.
const SEND_BYTES_BOUNDS: &[f64] = &[
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    2000.0,
    3000.0,
    4000.0,
    5000.0,
    6000.0,
    7000.0,
    8000.0,
    9000.0,
    10000.0,
    20000.0,
    30000.0,
    50000.0,
    100_000.0,
    200_000.0,
    300_000.0,
    400_000.0,
    500_000.0,
    600_000.0,
    700_000.0,
    800_000.0,
    900_000.0,
    1_000_000.0,
    2_000_000.0,
    3_000_000.0,
    4_000_000.0,
    5_000_000.0,
    6_000_000.0,
    7_000_000.0,
    8_000_000.0,
    9_000_000.0,
];

/// The batching settings the workers need, resolved from the config.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// Items that trigger a send (0: any).
    pub(super) size_trigger: usize,
    /// Largest batch sent (0: unlimited).
    pub(super) max_items: usize,
    /// Longest wait of the oldest held item (0: none).
    pub(super) timeout: Duration,
}

/// Why a batch was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    /// `send_batch_size` reached (or no timeout configured).
    Size,
    /// The timeout expired.
    Timeout,
    /// Shutdown flush.
    Shutdown,
}

/// How much the processor holds, in items and encoded bytes, against its bounds.
#[derive(Debug)]
pub(super) struct Budget {
    max_items: usize,
    max_bytes: usize,
    used: Mutex<(usize, usize)>,
    /// Woken whenever something is released.
    room: Notify,
}

impl Budget {
    /// A budget of at most `max_items` and `max_bytes`.
    pub(super) fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            max_items,
            max_bytes,
            used: Mutex::new((0, 0)),
            room: Notify::new(),
        }
    }

    /// Reserves room for a batch, waiting up to `wait` for the workers to
    /// release enough; false when there was none by then.
    pub(super) async fn reserve(&self, items: usize, bytes: usize, wait: Duration) -> bool {
        if self.try_reserve(items, bytes) {
            return true;
        }
        let until = Instant::now() + wait;
        loop {
            let released = self.room.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between wakes it.
            released.as_mut().enable();
            if self.try_reserve(items, bytes) {
                return true;
            }
            if tokio::time::timeout_at(until, released).await.is_err() {
                return self.try_reserve(items, bytes);
            }
        }
    }

    /// Reserves room for a batch. An empty buffer takes any one batch, so a
    /// request larger than the bounds is not refused forever.
    pub(super) fn try_reserve(&self, items: usize, bytes: usize) -> bool {
        let mut used = self.used.lock();
        let fits = used.0 == 0
            || (used.0.saturating_add(items) <= self.max_items
                && used.1.saturating_add(bytes) <= self.max_bytes);
        if fits {
            used.0 += items;
            used.1 += bytes;
        }
        fits
    }

    /// Gives back what a batch reserved.
    pub(super) fn release(&self, items: usize, bytes: usize) {
        {
            let mut used = self.used.lock();
            used.0 = used.0.saturating_sub(items);
            used.1 = used.1.saturating_sub(bytes);
        }
        self.room.notify_waiters();
    }

    /// Items and bytes held now.
    pub(super) fn used(&self) -> (usize, usize) {
        *self.used.lock()
    }

    /// Forgets everything held (after a shutdown gave up on it).
    pub(super) fn clear(&self) -> (usize, usize) {
        let held = std::mem::take(&mut *self.used.lock());
        self.room.notify_waiters();
        held
    }
}

/// The batch processor's self-metrics (otelcol names, label `processor`).
#[derive(Debug)]
pub(super) struct BatchMetrics {
    send_size: Histogram,
    send_size_bytes: Histogram,
    size_trigger: Counter,
    timeout_trigger: Counter,
    /// Metadata combinations in use.
    pub(super) cardinality: Gauge,
    /// Items dropped after accepting them.
    pub(super) dropped: Counter,
    /// Items refused to the sender.
    pub(super) refused: Counter,
}

impl BatchMetrics {
    /// Registers the series of processor `id` for `signal`.
    pub(super) fn register(registry: &MetricsRegistry, id: &str, signal: Signal) -> Self {
        let labels = [("processor", id)];
        let with_signal = [("processor", id), ("otel_signal", signal.as_str())];
        Self {
            send_size: registry.histogram(
                "otelcol_processor_batch_batch_send_size",
                "Number of units in the batch",
                &labels,
                SEND_SIZE_BOUNDS,
            ),
            send_size_bytes: registry.histogram(
                "otelcol_processor_batch_batch_send_size_bytes",
                "Number of bytes in batch that was sent",
                &labels,
                SEND_BYTES_BOUNDS,
            ),
            size_trigger: registry.counter(
                "otelcol_processor_batch_batch_size_trigger_send",
                "Number of times the batch was sent due to a size trigger",
                &labels,
            ),
            timeout_trigger: registry.counter(
                "otelcol_processor_batch_timeout_trigger_send",
                "Number of times the batch was sent due to a timeout trigger",
                &labels,
            ),
            cardinality: registry.gauge(
                "otelcol_processor_batch_metadata_cardinality",
                "Number of distinct metadata value combinations being processed",
                &labels,
            ),
            dropped: registry.counter(
                "otelcol_processor_dropped_items",
                "Number of items the processor accepted and then dropped.",
                &with_signal,
            ),
            refused: registry.counter(
                &format!("otelcol_processor_refused_{}", signal.item_metric_suffix()),
                "Number of items the processor refused to accept.",
                &labels,
            ),
        }
    }
}

/// State shared by the processor and all its workers.
#[derive(Debug)]
pub(super) struct Shared {
    /// The processor's id, for logs.
    pub(super) id: String,
    /// The pipeline's signal.
    pub(super) signal: Signal,
    /// Batching settings.
    pub(super) settings: Settings,
    /// Where batches go; also holds the shutdown deadline.
    pub(super) next: NextStage,
    /// Bound on what is held.
    pub(super) budget: Budget,
    /// Self-metrics.
    pub(super) metrics: BatchMetrics,
    /// Items this instance dropped, for the shutdown summary.
    pub(super) dropped_total: AtomicU64,
    drop_log: RateLimitedLog,
}

impl Shared {
    /// Shared state for a processor.
    pub(super) fn new(
        id: String,
        signal: Signal,
        settings: Settings,
        next: BoxConsumer,
        budget: Budget,
        metrics: BatchMetrics,
    ) -> Self {
        Self {
            next: NextStage::new(id.clone(), next),
            id,
            signal,
            settings,
            budget,
            metrics,
            dropped_total: AtomicU64::new(0),
            drop_log: RateLimitedLog::default(),
        }
    }

    /// Merges parts into one payload. Unmodified batches merge by keeping
    /// their received bytes as segments, so nothing is copied here.
    pub(super) fn merge(&self, parts: Vec<Payload>) -> Option<Payload> {
        let mut parts = parts.into_iter();
        let mut merged = parts.next()?;
        for part in parts {
            if let Err(other) = merged.append(part) {
                // consume() admits only this pipeline's signal.
                self.dropped(
                    other.item_count(),
                    &format!(
                        "a {} batch reached a {} batcher",
                        other.signal(),
                        self.signal
                    ),
                );
            }
        }
        Some(merged)
    }

    /// Sends a chunk, retrying while the next stage refuses it for now, and
    /// releases its share of the budget once it left (delivered or dropped).
    pub(super) async fn deliver(&self, shard: &Shard, chunk: Chunk, trigger: Trigger) {
        match trigger {
            Trigger::Size => self.metrics.size_trigger.inc(),
            Trigger::Timeout => self.metrics.timeout_trigger.inc(),
            Trigger::Shutdown => {}
        }
        self.metrics.send_size.record(chunk.items as f64);
        self.metrics.send_size_bytes.record(chunk.bytes as f64);
        let telemetry = Telemetry {
            payload: chunk.payload,
            client: shard.client.clone(),
        };
        let outcome = self.next.deliver(telemetry).await;
        self.budget.release(chunk.items, chunk.bytes);
        if let Err(reason) = outcome {
            self.dropped(chunk.items, &reason.to_string());
        }
    }

    fn dropped(&self, items: usize, reason: &str) {
        self.metrics.dropped.add(items as u64);
        self.dropped_total
            .fetch_add(items as u64, Ordering::Relaxed);
        if let Some(suppressed) = self.drop_log.check() {
            tracing::error!(
                processor = %self.id,
                signal = %self.signal,
                items,
                suppressed,
                "batch processor dropped data: {reason}"
            );
        }
    }
}
