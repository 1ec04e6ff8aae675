//! What the workers share: settings, the buffer budget, self-metrics, and
//! delivery to the next stage with retries on retryable refusals.

use super::shard::{Chunk, Shard};
use crate::consumer::{BoxConsumer, ConsumeError};
use crate::observe::{Counter, Gauge, Histogram, MetricsRegistry, RateLimitedLog};
use crate::pdata::{BatchError, ClientInfo, Logs, Metrics, Payload, Signal, Telemetry, Traces};
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// First wait before retrying a batch the next stage refused for now.
const RETRY_INITIAL: Duration = Duration::from_millis(10);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(1);

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
}

impl Budget {
    /// A budget of at most `max_items` and `max_bytes`.
    pub(super) fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            max_items,
            max_bytes,
            used: Mutex::new((0, 0)),
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
        let mut used = self.used.lock();
        used.0 = used.0.saturating_sub(items);
        used.1 = used.1.saturating_sub(bytes);
    }

    /// Items and bytes held now.
    pub(super) fn used(&self) -> (usize, usize) {
        *self.used.lock()
    }

    /// Forgets everything held (after a shutdown gave up on it).
    pub(super) fn clear(&self) -> (usize, usize) {
        std::mem::take(&mut *self.used.lock())
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
    /// Where batches go.
    pub(super) next: BoxConsumerDebug,
    /// Bound on what is held.
    pub(super) budget: Budget,
    /// Self-metrics.
    pub(super) metrics: BatchMetrics,
    /// The shutdown deadline, once shutdown started.
    pub(super) shutdown: watch::Sender<Option<Instant>>,
    /// Items this instance dropped, for the shutdown summary.
    pub(super) dropped_total: AtomicU64,
    drop_log: RateLimitedLog,
    retry_log: RateLimitedLog,
}

/// The next consumer, with a `Debug` that says what it is.
pub(super) struct BoxConsumerDebug(pub(super) BoxConsumer);

impl std::fmt::Debug for BoxConsumerDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consumer")
    }
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
            id,
            signal,
            settings,
            next: BoxConsumerDebug(next),
            budget,
            metrics,
            shutdown: watch::Sender::new(None),
            dropped_total: AtomicU64::new(0),
            drop_log: RateLimitedLog::default(),
            retry_log: RateLimitedLog::default(),
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
        let outcome = self.send_with_retry(&shard.client, chunk.payload).await;
        self.budget.release(chunk.items, chunk.bytes);
        if let Err(reason) = outcome {
            self.dropped(chunk.items, &reason);
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

    async fn send_with_retry(
        &self,
        client: &ClientInfo,
        mut payload: Payload,
    ) -> Result<(), String> {
        let mut backoff = RETRY_INITIAL;
        loop {
            if self.deadline_passed() {
                return Err("the shutdown deadline passed before the next stage took it".into());
            }
            let backup = Backup::of(&payload);
            let telemetry = Telemetry {
                payload,
                client: client.clone(),
            };
            let error = match self.next.0.consume(telemetry).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Err(format!("the next stage refused it permanently: {error}"));
            }
            payload = backup
                .restore()
                .map_err(|e| format!("cannot restore the batch for a retry: {e}"))?;
            if let Some(suppressed) = self.retry_log.check() {
                tracing::warn!(
                    processor = %self.id,
                    signal = %self.signal,
                    suppressed,
                    "next stage refused a batch, retrying: {error}"
                );
            }
            let wait = retry_wait(&error, backoff);
            if !self.pause(wait).await {
                return Err(format!(
                    "the shutdown deadline passed while the next stage refused it: {error}"
                ));
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// True once shutdown started and its deadline passed.
    pub(super) fn deadline_passed(&self) -> bool {
        matches!(*self.shutdown.borrow(), Some(at) if Instant::now() >= at)
    }

    /// Waits `wait`; false when the shutdown deadline comes first.
    async fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut deadline = self.shutdown.subscribe();
        loop {
            let current = *deadline.borrow_and_update();
            if let Some(at) = current
                && at <= until
            {
                tokio::time::sleep_until(at).await;
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                changed = deadline.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(until).await;
                        return true;
                    }
                }
            }
        }
    }
}

/// The wait before the next attempt: the next stage's hint when it gives one
/// (never shorter than the backoff), capped at [`RETRY_MAX`].
fn retry_wait(error: &ConsumeError, backoff: Duration) -> Duration {
    error
        .retry_after()
        .map_or(backoff, |hint| hint.max(backoff))
        .min(RETRY_MAX)
}

/// A copy of a batch kept for a retry: its protobuf bytes when it still has
/// them (a reference count, no copy), else a clone.
enum Backup {
    Encoded(Signal, Bytes),
    Copy(Payload),
}

impl Backup {
    fn of(payload: &Payload) -> Self {
        let encoded = match payload {
            Payload::Traces(b) => b.has_original_encoding(),
            Payload::Metrics(b) => b.has_original_encoding(),
            Payload::Logs(b) => b.has_original_encoding(),
        };
        if encoded {
            Backup::Encoded(payload.signal(), payload.to_protobuf())
        } else {
            Backup::Copy(payload.clone())
        }
    }

    fn restore(self) -> Result<Payload, BatchError> {
        Ok(match self {
            Backup::Copy(payload) => payload,
            Backup::Encoded(Signal::Traces, bytes) => Payload::Traces(Traces::decode(bytes)?),
            Backup::Encoded(Signal::Metrics, bytes) => Payload::Metrics(Metrics::decode(bytes)?),
            Backup::Encoded(Signal::Logs, bytes) => Payload::Logs(Logs::decode(bytes)?),
        })
    }
}
