//! The `batch` processor instance: admission into the bounded buffer, the
//! shard per metadata combination, and shutdown.

use super::BatchConfig;
use super::deliver::{BatchMetrics, Budget, Settings, Shared};
use super::shard::{self, Shard};
use crate::component::{ComponentError, CreateContext, Lifecycle};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer, ErrorKind};
use crate::observe::RateLimitedLog;
use crate::pdata::{ClientInfo, Signal, Telemetry};
use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The buffer holds up to this many batches of
/// `max(send_batch_size, send_batch_max_size, `[`MIN_BUFFER_BATCH`]`)` items.
const BUFFER_BATCHES: usize = 4;
/// The smallest batch size the buffer is sized for (otelcol's default
/// `send_batch_size`), so that a small `send_batch_size` still admits the
/// requests of senders that batch with the default: agents, and
/// `tail_sampling`, which hands on up to 8192 spans at a time.
const MIN_BUFFER_BATCH: usize = 8192;
/// The buffer holds at most this many encoded bytes.
const BUFFER_BYTES: usize = 64 << 20;
/// How long `consume` waits for room in a full buffer before refusing.
const ADMISSION_WAIT: Duration = Duration::from_secs(1);
/// Retry hint given to senders when the buffer is full.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounds of the buffer `consume` admits into.
#[derive(Clone, Copy, Debug)]
pub(super) struct BufferLimits {
    /// Items held at most.
    pub(super) items: usize,
    /// Encoded bytes held at most.
    pub(super) bytes: usize,
    /// How long `consume` waits for room before refusing.
    pub(super) admission_wait: Duration,
}

impl BufferLimits {
    /// The limits for `config`: [`BUFFER_BATCHES`] batches of the largest of
    /// `send_batch_size`, `send_batch_max_size` and [`MIN_BUFFER_BATCH`]
    /// items, [`BUFFER_BYTES`], and a wait of [`ADMISSION_WAIT`].
    pub(super) fn for_config(config: &BatchConfig) -> Self {
        let batch = config
            .send_batch_size
            .max(config.send_batch_max_size)
            .max(MIN_BUFFER_BATCH);
        BufferLimits {
            items: batch.saturating_mul(BUFFER_BATCHES),
            bytes: BUFFER_BYTES,
            admission_wait: ADMISSION_WAIT,
        }
    }
}

/// The values of the configured metadata keys in one request, key by key.
type ShardKey = Vec<Vec<String>>;

/// Batches items for the next stage of one pipeline.
///
/// `consume` only queues: it accepts when the buffer (bounded in items and
/// encoded bytes) has room, waiting up to [`ADMISSION_WAIT`] for the workers
/// to make some (otelcol's `consume` blocks until its batcher takes the
/// data), and refuses with `RESOURCE_EXHAUSTED` after that. A worker task
/// per metadata combination cuts batches and hands them on, retrying
/// refusals the next stage marks as retryable, so a full exporter queue
/// turns into backpressure at the receiver instead of data loss.
#[derive(Debug)]
pub struct BatchProcessor {
    shared: Arc<Shared>,
    admission_wait: Duration,
    metadata_keys: Vec<String>,
    cardinality_limit: usize,
    shards: RwLock<Shards>,
    refuse_log: RateLimitedLog,
}

#[derive(Debug, Default)]
struct Shards {
    closing: bool,
    by_key: HashMap<ShardKey, Arc<Shard>>,
    workers: Vec<JoinHandle<()>>,
}

impl BatchProcessor {
    /// A processor for a pipeline of `signal` that sends to `next`, with
    /// self-metrics in `ctx.host.metrics` under the component id.
    pub fn new(
        ctx: &CreateContext,
        config: &BatchConfig,
        signal: Signal,
        next: BoxConsumer,
    ) -> Self {
        Self::with_limits(ctx, config, signal, next, BufferLimits::for_config(config))
    }

    pub(super) fn with_limits(
        ctx: &CreateContext,
        config: &BatchConfig,
        signal: Signal,
        next: BoxConsumer,
        limits: BufferLimits,
    ) -> Self {
        let id = ctx.id.to_string();
        let settings = Settings {
            size_trigger: config.send_batch_size,
            max_items: config.send_batch_max_size,
            timeout: config.timeout,
        };
        let metrics = BatchMetrics::register(&ctx.host.metrics, &id, signal);
        let budget = Budget::new(limits.items, limits.bytes);
        Self {
            admission_wait: limits.admission_wait,
            shared: Arc::new(Shared::new(id, signal, settings, next, budget, metrics)),
            metadata_keys: config.normalized_keys(),
            cardinality_limit: config.metadata_cardinality_limit,
            shards: RwLock::new(Shards::default()),
            refuse_log: RateLimitedLog::default(),
        }
    }

    /// Items and encoded bytes held now (queued, being batched or being retried).
    pub fn held(&self) -> (usize, usize) {
        self.shared.budget.used()
    }

    fn shard_key(&self, client: &ClientInfo) -> ShardKey {
        self.metadata_keys
            .iter()
            .map(|key| client.get(key).into_iter().map(str::to_string).collect())
            .collect()
    }

    /// The shard for a request's metadata, created (with its worker) on first use.
    fn shard_for(&self, client: &ClientInfo) -> Result<Arc<Shard>, ConsumeError> {
        let key = self.shard_key(client);
        {
            let shards = self.shards.read();
            if shards.closing {
                return Err(shutting_down());
            }
            if let Some(shard) = shards.by_key.get(&key) {
                return Ok(shard.clone());
            }
        }
        let mut shards = self.shards.write();
        if shards.closing {
            return Err(shutting_down());
        }
        if let Some(shard) = shards.by_key.get(&key) {
            return Ok(shard.clone());
        }
        if !self.metadata_keys.is_empty() && shards.by_key.len() >= self.cardinality_limit {
            return Err(ConsumeError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "too many batcher metadata-value combinations (metadata_cardinality_limit {})",
                    self.cardinality_limit
                ),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConsumeError::new(
                ErrorKind::Internal,
                "batch processor used outside a tokio runtime",
            )
        })?;
        let shard = Arc::new(Shard::new(self.shard_client(&key)));
        let worker = runtime.spawn(shard::run(self.shared.clone(), shard.clone()));
        shards.workers.push(worker);
        shards.by_key.insert(key, shard.clone());
        self.shared.metrics.cardinality.add(1);
        Ok(shard)
    }

    /// The client info batches of a shard carry: the metadata it was selected by.
    fn shard_client(&self, key: &ShardKey) -> ClientInfo {
        if self.metadata_keys.is_empty() {
            return ClientInfo::default();
        }
        let pairs = self
            .metadata_keys
            .iter()
            .zip(key)
            .flat_map(|(k, values)| values.iter().map(move |v| (k.clone(), v.clone())))
            .collect();
        ClientInfo::with_metadata(None, pairs)
    }

    fn refuse(&self, items: usize, error: ConsumeError) -> ConsumeError {
        self.shared.metrics.refused.add(items as u64);
        if let Some(suppressed) = self.refuse_log.check() {
            tracing::warn!(
                processor = %self.shared.id,
                signal = %self.shared.signal,
                items,
                suppressed,
                "batch processor refused data: {error}"
            );
        }
        error
    }
}

fn shutting_down() -> ConsumeError {
    ConsumeError::unavailable("batch processor is shutting down")
}

#[async_trait]
impl Consumer for BatchProcessor {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry { payload, client } = telemetry;
        let items = payload.item_count();
        if payload.signal() != self.shared.signal {
            return Err(ConsumeError::new(
                ErrorKind::Internal,
                format!(
                    "batch processor of a {} pipeline got {}",
                    self.shared.signal,
                    payload.signal()
                ),
            ));
        }
        if items == 0 {
            return Ok(());
        }
        let shard = self.shard_for(&client).map_err(|e| self.refuse(items, e))?;
        let bytes = payload.encoded_len();
        let admitted = self
            .shared
            .budget
            .reserve(items, bytes, self.admission_wait)
            .await;
        if !admitted {
            let (held_items, held_bytes) = self.shared.budget.used();
            return Err(self.refuse(
                items,
                ConsumeError::resource_exhausted(
                    format!(
                        "batch processor buffer is full ({held_items} items, {held_bytes} bytes held)"
                    ),
                    Some(FULL_RETRY_AFTER),
                ),
            ));
        }
        if shard.push(payload, items, bytes).is_err() {
            self.shared.budget.release(items, bytes);
            return Err(self.refuse(items, shutting_down()));
        }
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for BatchProcessor {
    /// Stops accepting, lets every worker flush what it holds, and returns
    /// once they are done or at `deadline`; what is still held then is
    /// counted as dropped.
    async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), ComponentError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let dropped_before = self.shared.dropped_total.load(Ordering::Relaxed);
        let (shards, mut workers) = {
            let mut shards = self.shards.write();
            if shards.closing {
                return Ok(());
            }
            shards.closing = true;
            let list: Vec<Arc<Shard>> = shards.by_key.values().cloned().collect();
            (list, std::mem::take(&mut shards.workers))
        };
        self.shared.next.shut_down_by(deadline);
        for shard in &shards {
            shard.close();
        }
        let finished = tokio::time::timeout_at(deadline, async {
            while let Some(worker) = workers.last_mut() {
                let _ = worker.await;
                workers.pop();
            }
        })
        .await;
        if finished.is_err() {
            for worker in &workers {
                worker.abort();
            }
            for worker in workers {
                let _ = worker.await;
            }
        }
        let (left, _) = self.shared.budget.clear();
        if left > 0 {
            self.shared.metrics.dropped.add(left as u64);
            self.shared
                .dropped_total
                .fetch_add(left as u64, Ordering::Relaxed);
        }
        let dropped = self
            .shared
            .dropped_total
            .load(Ordering::Relaxed)
            .saturating_sub(dropped_before);
        if dropped > 0 {
            tracing::error!(
                processor = %self.shared.id,
                signal = %self.shared.signal,
                items = dropped,
                "batch processor dropped data during shutdown"
            );
        }
        self.shared
            .metrics
            .cardinality
            .add(-i64::try_from(shards.len()).unwrap_or(i64::MAX));
        Ok(())
    }
}

impl Drop for BatchProcessor {
    /// Dropped without a shutdown: stop the workers and count what they held.
    fn drop(&mut self) {
        let workers = std::mem::take(&mut self.shards.get_mut().workers);
        if workers.is_empty() {
            return;
        }
        for worker in &workers {
            worker.abort();
        }
        let (left, _) = self.shared.budget.clear();
        if left > 0 {
            self.shared.metrics.dropped.add(left as u64);
            tracing::error!(
                processor = %self.shared.id,
                signal = %self.shared.signal,
                items = left,
                "batch processor dropped without a shutdown; the data it held is lost"
            );
        }
    }
}
