//! The `tail_sampling` processor instance: admission into the shards'
//! bounded queues, starting the shard and delivery tasks, and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use collector_core::component::{ComponentError, CreateContext, Lifecycle};
use collector_core::consumer::{BoxConsumer, ConsumeError, Consumer, ErrorKind};
use collector_core::observe::RateLimitedLog;
use collector_core::pdata::{Payload, Telemetry};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::config::TailSamplingConfig;
use super::metrics::{Metrics, ShardGauges};
use super::output::{self, Output, OutputBudget};
use super::shard::{Clock, Input, MAX_REQUEST_SPANS, QueueBudget, Shard};
use super::shared::Shared;
use super::split::split_encoded;
use crate::Sampler;

/// Bounds of the queues in front of the shards and behind them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Parts of requests each shard's input queue holds.
    pub(crate) requests_per_shard: usize,
    /// Encoded bytes all input queues hold together (divided among the shards).
    pub(crate) bytes: usize,
    /// Encoded bytes of sampled spans all output queues hold together
    /// before new spans are refused.
    pub(crate) output_bytes: usize,
}

impl Default for QueueLimits {
    /// 256 requests per shard and 64 MiB in front of the shards; 64 MiB of
    /// sampled spans behind them, about 2 s of what the gateway keeps at
    /// 250,000 spans/s received, so that a next stage that refuses for a
    /// second (the `batch` processor's retry hint) does not stop ingestion.
    fn default() -> Self {
        QueueLimits {
            requests_per_shard: 256,
            bytes: 64 << 20,
            output_bytes: 64 << 20,
        }
    }
}

/// Retry hint given to senders when a queue is full.
const FULL_RETRY_AFTER: Duration = Duration::from_millis(500);

/// Tail-samples the spans of one traces pipeline.
///
/// `consume` splits each request by trace ID and puts one part in each
/// concerned shard's bounded queue, all or nothing: when a queue is full, or
/// the output queues hold their bound of sampled spans not delivered yet, it
/// refuses the whole request with `RESOURCE_EXHAUSTED`, so a retry never
/// duplicates spans. Each shard is a task owning a [`Sampler`]; it decides
/// traces when they are due and queues the sampled ones for its delivery
/// task, which hands them on, retrying while the next stage refuses them
/// for now. A shard never waits for the next stage.
#[derive(Debug)]
pub struct TailSamplingProcessor {
    shared: Arc<Shared>,
    /// The shards' queues; `None` once shutdown started.
    inputs: RwLock<Option<Vec<mpsc::Sender<Input>>>>,
    budgets: Vec<Arc<QueueBudget>>,
    output: Arc<OutputBudget>,
    gauges: Vec<Arc<ShardGauges>>,
    /// Shards, with their output queues, built and not started yet.
    idle: Mutex<Vec<(Shard, Arc<Output>)>>,
    /// Shard and delivery tasks.
    workers: Mutex<Vec<JoinHandle<()>>>,
    refuse_log: RateLimitedLog,
}

impl TailSamplingProcessor {
    /// A processor that sends sampled spans to `next`, with self-metrics in
    /// `ctx.host.metrics` under the component id. The shards start with
    /// [`Lifecycle::start`].
    pub fn new(
        ctx: &CreateContext,
        config: &TailSamplingConfig,
        next: BoxConsumer,
    ) -> Result<Self, ComponentError> {
        Self::with_limits(ctx, config, next, QueueLimits::default())
    }

    pub(crate) fn with_limits(
        ctx: &CreateContext,
        config: &TailSamplingConfig,
        next: BoxConsumer,
        limits: QueueLimits,
    ) -> Result<Self, ComponentError> {
        let shards = config.shards();
        let shard_config = config.shard_config(shards);
        let mut samplers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let mut sampler = Sampler::new(shard_config.clone())
                .map_err(|e| ComponentError::new(format!("invalid tail_sampling config: {e}")))?;
            sampler.set_record_policy(config.record_policy);
            samplers.push(sampler);
        }
        let gauges: Vec<Arc<ShardGauges>> = (0..shards)
            .map(|_| Arc::new(ShardGauges::default()))
            .collect();
        let id = ctx.id.to_string();
        let policy_names: Vec<String> = samplers
            .first()
            .map(|s| s.policy_names().map(str::to_owned).collect())
            .unwrap_or_default();
        let metrics = Metrics::register(
            &ctx.host.metrics,
            &id,
            policy_names.iter().map(String::as_str),
            &gauges,
        );
        let shared = Arc::new(Shared::new(id, next, metrics));
        let clock = Clock::new();
        let per_shard_bytes = (limits.bytes / shards).max(1);
        let output_budget = Arc::new(OutputBudget::new(limits.output_bytes.max(1)));
        let mut inputs = Vec::with_capacity(shards);
        let mut budgets = Vec::with_capacity(shards);
        let mut idle = Vec::with_capacity(shards);
        for (sampler, gauges) in samplers.into_iter().zip(&gauges) {
            let (tx, rx) = mpsc::channel(limits.requests_per_shard.max(1));
            let budget = Arc::new(QueueBudget::new(per_shard_bytes));
            let output = Arc::new(Output::new(output_budget.clone()));
            let shard = Shard::new(
                sampler,
                rx,
                budget.clone(),
                output.clone(),
                gauges.clone(),
                shared.clone(),
                clock,
            );
            idle.push((shard, output));
            inputs.push(tx);
            budgets.push(budget);
        }
        Ok(TailSamplingProcessor {
            shared,
            inputs: RwLock::new(Some(inputs)),
            budgets,
            output: output_budget,
            gauges,
            idle: Mutex::new(idle),
            workers: Mutex::new(Vec::new()),
            refuse_log: RateLimitedLog::default(),
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.budgets.len()
    }

    /// Spans waiting in the shards' queues.
    pub fn queued_spans(&self) -> usize {
        self.budgets.iter().map(|b| b.used().0).sum()
    }

    /// Spans the shards hold: buffered until their trace is decided, or
    /// decided as sampled and not delivered yet.
    pub fn held_spans(&self) -> u64 {
        let buffered: u64 = self
            .gauges
            .iter()
            .map(|g| g.held_spans.load(Ordering::Relaxed))
            .sum();
        buffered.saturating_add(self.output.used().0 as u64)
    }

    /// Spans decided as sampled and not delivered yet (queued for delivery
    /// or being delivered).
    pub fn undelivered_spans(&self) -> usize {
        self.output.used().0
    }

    /// Spawns the shards, and their delivery tasks, not running yet.
    fn start_idle(&self) -> Result<(), ComponentError> {
        let idle = std::mem::take(&mut *self.idle.lock());
        if idle.is_empty() {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ComponentError::new("tail_sampling processor started outside a tokio runtime")
        })?;
        let mut workers = self.workers.lock();
        for (shard, output) in idle {
            workers.push(runtime.spawn(shard.run()));
            workers.push(runtime.spawn(output::deliver(
                output,
                self.shared.clone(),
                MAX_REQUEST_SPANS,
            )));
        }
        Ok(())
    }

    fn refuse(&self, spans: usize, error: ConsumeError) -> ConsumeError {
        self.shared.metrics.refused_spans.add(spans as u64);
        if let Some(suppressed) = self.refuse_log.check() {
            tracing::warn!(
                processor = %self.shared.id,
                spans,
                suppressed,
                "tail_sampling refused spans: {error}"
            );
        }
        error
    }

    /// Counts what stopped shards and delivery tasks still held or had
    /// queued as dropped.
    fn count_leftovers(&self, why: &str) {
        let held: u64 = self
            .gauges
            .iter()
            .map(|g| g.held_spans.swap(0, Ordering::Relaxed))
            .sum();
        let queued: usize =
            self.budgets.iter().map(|b| b.clear()).sum::<usize>() + self.output.clear();
        for g in &self.gauges {
            g.clear();
        }
        let left = usize::try_from(held)
            .unwrap_or(usize::MAX)
            .saturating_add(queued);
        if left > 0 {
            self.shared.metrics.dropped_items.add(left as u64);
            self.shared
                .dropped_total
                .fetch_add(left as u64, Ordering::Relaxed);
            tracing::error!(
                processor = %self.shared.id,
                spans = left,
                "tail_sampling lost the spans its shards still held: {why}"
            );
        }
    }
}

fn shutting_down() -> ConsumeError {
    ConsumeError::unavailable("tail_sampling processor is shutting down")
}

#[async_trait]
impl Consumer for TailSamplingProcessor {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let batch = match telemetry.payload {
            Payload::Traces(batch) => batch,
            other => {
                return Err(ConsumeError::new(
                    ErrorKind::Internal,
                    format!("tail_sampling processor got {}", other.signal()),
                ));
            }
        };
        let total_spans = batch.item_count();
        if total_spans == 0 {
            return Ok(());
        }
        if self.inputs.read().is_none() {
            return Err(self.refuse(total_spans, shutting_down()));
        }
        if self.output.is_full() {
            let (spans, bytes) = self.output.used();
            return Err(self.refuse(
                total_spans,
                ConsumeError::resource_exhausted(
                    format!(
                        "tail_sampling output queue is full ({spans} sampled spans, {bytes} bytes not delivered yet): the next stage is not keeping up"
                    ),
                    Some(FULL_RETRY_AFTER),
                ),
            ));
        }
        let total_bytes = batch.encoded_len();
        // The received bytes, split in place; a batch something decoded
        // and changed upstream is encoded once for this.
        let split = split_encoded(&batch.protobuf_segments(), self.shards()).or_else(|| {
            split_encoded(
                &[Bytes::from(batch.request().encode_to_vec())],
                self.shards(),
            )
        });
        let Some(split) = split else {
            // Unreachable for scanned or prost-encoded bytes; refused, counted.
            return Err(self.refuse(
                total_spans,
                ConsumeError::new(
                    ErrorKind::Internal,
                    "tail_sampling could not read the request's encoding",
                ),
            ));
        };
        let guard = self.inputs.read();
        let Some(senders) = guard.as_ref() else {
            return Err(self.refuse(total_spans, shutting_down()));
        };
        // Reserve room in every concerned shard first: all or nothing.
        let mut permits = Vec::with_capacity(senders.len());
        let mut refusal = None;
        for (shard, sender) in senders.iter().enumerate() {
            let spans = split.spans[shard];
            if spans == 0 {
                continue;
            }
            let bytes = total_bytes.saturating_mul(spans) / total_spans;
            let budget = &self.budgets[shard];
            if !budget.try_reserve(spans, bytes) {
                refusal = Some(ConsumeError::resource_exhausted(
                    format!("tail_sampling shard {shard} queue is full (bytes)"),
                    Some(FULL_RETRY_AFTER),
                ));
                break;
            }
            match sender.try_reserve() {
                Ok(permit) => permits.push((shard, permit, spans, bytes)),
                Err(e) => {
                    budget.release(spans, bytes);
                    refusal = Some(match e {
                        TrySendError::Full(()) => ConsumeError::resource_exhausted(
                            format!("tail_sampling shard {shard} queue is full"),
                            Some(FULL_RETRY_AFTER),
                        ),
                        TrySendError::Closed(()) => shutting_down(),
                    });
                    break;
                }
            }
        }
        if let Some(error) = refusal {
            for (shard, _, spans, bytes) in permits {
                self.budgets[shard].release(spans, bytes);
            }
            return Err(self.refuse(total_spans, error));
        }
        let mut parts = split.parts;
        for (shard, permit, spans, bytes) in permits {
            permit.send(Input {
                encoded: std::mem::take(&mut parts[shard]),
                spans,
                bytes,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for TailSamplingProcessor {
    async fn start(&self) -> Result<(), ComponentError> {
        self.start_idle()
    }

    /// Stops accepting, lets every shard take what is queued, decide every
    /// buffered trace (or drop them, with `drop_pending_traces_on_shutdown`)
    /// and the delivery tasks deliver the sampled ones, and returns once
    /// they are done or at `deadline`; what is still held then is counted
    /// as dropped.
    async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), ComponentError> {
        let Some(inputs) = self.inputs.write().take() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        self.shared.next.shut_down_by(deadline);
        // Each shard drains its queue, then sees its end.
        drop(inputs);
        let dropped_before = self.shared.dropped_total.load(Ordering::Relaxed);
        self.start_idle()?;
        let mut workers = std::mem::take(&mut *self.workers.lock());
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
            self.count_leftovers("the shutdown deadline passed");
        }
        let dropped = self
            .shared
            .dropped_total
            .load(Ordering::Relaxed)
            .saturating_sub(dropped_before);
        if dropped > 0 {
            tracing::error!(
                processor = %self.shared.id,
                spans = dropped,
                "tail_sampling dropped sampled spans during shutdown"
            );
        }
        Ok(())
    }
}

impl Drop for TailSamplingProcessor {
    /// Dropped without a shutdown: stop the tasks and count what they held.
    fn drop(&mut self) {
        let workers = std::mem::take(&mut *self.workers.lock());
        if workers.is_empty() {
            return;
        }
        for worker in &workers {
            worker.abort();
        }
        self.count_leftovers("the processor was dropped without a shutdown");
    }
}
