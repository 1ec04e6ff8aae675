//! [`QueuedExporter`]: the queue, workers, timeout and retry around a [`Sender`].

use super::config::{HelperConfig, Sizer};
use super::metrics::ExporterMetrics;
use super::persistent::{PersistentStore, StoredKey};
use super::queue::{BoundedQueue, PushError, Weight};
use super::retry::Backoff;
use super::{SendOutcome, Sender};
use async_trait::async_trait;
use collector_core::component::{ComponentError, CreateContext, Host, Lifecycle};
use collector_core::config::duration;
use collector_core::consumer::{ConsumeError, Consumer, ErrorKind};
use collector_core::observe::{MetricsRegistry, RateLimitedLog};
use collector_core::pdata::{Payload, Signal, Telemetry};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod recovery;

/// How long workers get to stop after the shutdown deadline cancelled them.
const STOP_GRACE: Duration = Duration::from_millis(200);

type Lane = Arc<BoundedQueue<Entry>>;

/// A queued request.
#[derive(Debug)]
struct Entry {
    /// The data; `None` for a stored request not read back yet.
    payload: Option<Payload>,
    /// Its key, in a persistent queue.
    stored: Option<StoredKey>,
}

/// How the delivery of a request ended.
enum Delivery {
    /// Sent, or given up on (counted and logged).
    Done(Result<(), ConsumeError>),
    /// Shutdown interrupted it; `unsent` are the parts not delivered (all of
    /// it, or what is left after a split). Only for stored requests, which
    /// stay stored for later instead of being dropped.
    Kept {
        unsent: Vec<Payload>,
        progressed: bool,
    },
}

/// How one part's delivery ended, short of success.
enum Undelivered {
    Failed(ConsumeError),
    Interrupted,
}

/// A complete exporter around a [`Sender`]: sending queue (one per signal),
/// `num_consumers` workers per queue, timeout, retry, self-metrics, and a
/// shutdown that drains the queues until the deadline. With
/// `sending_queue.storage` the queue is persistent (opened by `start`).
pub struct QueuedExporter<S: Sender> {
    shared: Arc<Shared<S>>,
}

impl<S: Sender> std::fmt::Debug for QueuedExporter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedExporter")
            .field("id", &self.shared.id)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

struct Shared<S> {
    id: String,
    sender: S,
    config: HelperConfig,
    host: Arc<Host>,
    /// Persistent queue storage per signal, opened at start when
    /// `sending_queue.storage` is set.
    stores: Mutex<[Option<Arc<PersistentStore>>; 3]>,
    /// Requests and items a shutdown left stored, per signal, for the
    /// shutdown's summary.
    kept: Mutex<[(u64, u64); 3]>,
    metrics: ExporterMetrics,
    registry: Arc<MetricsRegistry>,
    failure_log: RateLimitedLog,
    partial_log: RateLimitedLog,
    /// New data is refused once set.
    closing: AtomicBool,
    /// Cancelled when shutdown begins: no backoff may end past the deadline.
    draining: CancellationToken,
    /// The shutdown deadline, set before `draining` is cancelled.
    deadline: Mutex<Option<Instant>>,
    /// Cancelled at the deadline: in-flight attempts and waits are abandoned.
    hard_stop: CancellationToken,
    /// One queue per signal, made on first use.
    lanes: Mutex<[Option<Lane>; 3]>,
    /// Workers and synchronous sends, waited for at shutdown.
    tasks: TaskTracker,
}

fn lane_index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl<S: Sender> QueuedExporter<S> {
    /// Wraps `sender` for the exporter `ctx.id`, registering its self-metrics.
    pub fn new(ctx: &CreateContext, config: HelperConfig, sender: S) -> Self {
        let id = ctx.id.to_string();
        Self {
            shared: Arc::new(Shared {
                metrics: ExporterMetrics::new(&ctx.host.metrics, &id),
                registry: ctx.host.metrics.clone(),
                id,
                sender,
                config,
                host: ctx.host.clone(),
                stores: Mutex::new([None, None, None]),
                kept: Mutex::new([(0, 0); 3]),
                failure_log: RateLimitedLog::default(),
                partial_log: RateLimitedLog::default(),
                closing: AtomicBool::new(false),
                draining: CancellationToken::new(),
                deadline: Mutex::new(None),
                hard_stop: CancellationToken::new(),
                lanes: Mutex::new([None, None, None]),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The transport.
    pub fn sender(&self) -> &S {
        &self.shared.sender
    }

    /// Units queued for `signal` (0 when its queue was never used).
    pub fn queue_size(&self, signal: Signal) -> u64 {
        self.shared.lanes.lock()[lane_index(signal)]
            .as_ref()
            .map_or(0, |lane| lane.used())
    }
}

impl<S: Sender> Drop for QueuedExporter<S> {
    /// Dropped without a shutdown (a failed build): let the workers send
    /// what is queued and then end, instead of waiting forever.
    fn drop(&mut self) {
        let lanes = self.shared.lanes.lock();
        self.shared.closing.store(true, Ordering::Release);
        for lane in lanes.iter().flatten() {
            lane.close();
        }
        // Ends the persistent queue's watchers, which hold the shared state.
        self.shared.draining.cancel();
    }
}

#[async_trait]
impl<S: Sender> Consumer for QueuedExporter<S> {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.shared.clone().consume(telemetry.payload).await
    }
}

#[async_trait]
impl<S: Sender> Lifecycle for QueuedExporter<S> {
    /// With `sending_queue.storage`: opens the storage and queues the
    /// requests left there by an earlier run, before any new data comes.
    async fn start(&self) -> Result<(), ComponentError> {
        self.shared.clone().open_storage().await
    }

    async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), ComponentError> {
        // Measure the remaining time on tokio's clock, so that paused-time
        // tests and the real runtime agree.
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        self.shared.shutdown(Instant::now() + remaining).await;
        Ok(())
    }
}

impl<S: Sender> Shared<S> {
    fn shutting_down(&self) -> ConsumeError {
        ConsumeError::unavailable(format!("exporter {} is shutting down", self.id))
    }

    fn store(&self, signal: Signal) -> Option<Arc<PersistentStore>> {
        self.stores.lock()[lane_index(signal)].clone()
    }

    /// What a request takes from the queue: units of the sizer, and bytes.
    fn size_of(&self, items: u64, bytes: u64) -> Weight {
        let units = match self.config.queue.sizer {
            Sizer::Requests => 1,
            Sizer::Items => items,
            Sizer::Bytes => bytes,
        };
        Weight { units, bytes }
    }

    async fn consume(self: Arc<Self>, payload: Payload) -> Result<(), ConsumeError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(self.shutting_down());
        }
        let items = payload.item_count();
        if items == 0 {
            return Ok(());
        }
        if !self.config.queue.enabled {
            return self
                .tasks
                .track_future(async {
                    match self.deliver(payload, false).await {
                        Delivery::Done(result) => result,
                        Delivery::Kept { .. } => Err(self.shutting_down()),
                    }
                })
                .await;
        }
        let signal = payload.signal();
        let Some(lane) = self.lane(signal) else {
            self.metrics.enqueue_failed(signal, items as u64);
            return Err(self.shutting_down());
        };
        let size = self.size_of(items as u64, payload.encoded_len() as u64);
        if self.config.queue.storage.is_none() {
            return self.enqueue_counted(&lane, payload, size).await;
        }
        // Once storing began it runs to its end even if the caller goes
        // away, so no stored request is left out of the queue.
        let shared = self.clone();
        self.tasks
            .spawn(async move { shared.enqueue_counted(&lane, payload, size).await })
            .await
            .unwrap_or_else(|e| {
                self.metrics.enqueue_failed(signal, items as u64);
                Err(ConsumeError::new(
                    ErrorKind::Internal,
                    format!("storing the request failed: {e}"),
                ))
            })
    }

    /// [`Self::enqueue`], counting a refusal in `enqueue_failed`.
    async fn enqueue_counted(
        &self,
        lane: &Lane,
        payload: Payload,
        size: Weight,
    ) -> Result<(), ConsumeError> {
        let (signal, items) = (payload.signal(), payload.item_count() as u64);
        let result = self.enqueue(lane, payload, size).await;
        if result.is_err() {
            self.metrics.enqueue_failed(signal, items);
        }
        result
    }

    /// Queues a request (stored first in a persistent queue).
    async fn enqueue(
        &self,
        lane: &Lane,
        payload: Payload,
        size: Weight,
    ) -> Result<(), ConsumeError> {
        let signal = payload.signal();
        let mut entry = Entry {
            payload: None,
            stored: None,
        };
        let store = if self.config.queue.storage.is_some() {
            let Some(store) = self.store(signal) else {
                return Err(ConsumeError::unavailable(format!(
                    "the persistent queue of exporter {} is not open",
                    self.id
                )));
            };
            // Do not write what would be refused anyway.
            if !self.config.queue.block_on_overflow || size.units > lane.capacity() {
                lane.check(size)
                    .map_err(|e| self.push_error(e, size, lane))?;
            }
            let key = store.store(&payload).await.map_err(|e| {
                if let Some(suppressed) = self.failure_log.check() {
                    tracing::error!(
                        exporter = %self.id,
                        data_type = signal.as_str(),
                        error = %e,
                        suppressed,
                        "cannot store a request in the persistent queue; refusing it"
                    );
                }
                ConsumeError::unavailable(format!("cannot store the request: {e}"))
            })?;
            entry.stored = Some(key);
            Some(store)
        } else {
            None
        };
        entry.payload = Some(payload);
        let pushed = if self.config.queue.block_on_overflow {
            lane.push_wait(entry, size).await
        } else {
            lane.try_push(entry, size)
        };
        let Err(error) = pushed else {
            return Ok(());
        };
        let (unit, entry) = split_push_error(error);
        if let (Some(store), Some(key)) = (store, entry.stored) {
            store.remove(key).await;
        }
        Err(self.push_error(unit, size, lane))
    }

    fn push_error(&self, error: PushError<()>, size: Weight, lane: &Lane) -> ConsumeError {
        match error {
            PushError::Full(()) => ConsumeError::resource_exhausted(
                format!("sending queue is full (exporter {})", self.id),
                None,
            ),
            PushError::TooLarge(()) => ConsumeError::invalid(format!(
                "a request of {} {} is larger than the sending queue of exporter {} ({} {})",
                size.units,
                self.config.queue.sizer.as_str(),
                self.id,
                lane.capacity(),
                self.config.queue.sizer.as_str(),
            )),
            PushError::Closed(()) => self.shutting_down(),
        }
    }

    /// The queue of `signal`, made (with its workers and gauges) on first use;
    /// `None` once shutdown began.
    fn lane(self: &Arc<Self>, signal: Signal) -> Option<Lane> {
        let mut lanes = self.lanes.lock();
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let slot = &mut lanes[lane_index(signal)];
        if let Some(lane) = slot {
            return Some(lane.clone());
        }
        let lane: Lane = Arc::new(BoundedQueue::new(
            self.config.queue.queue_size,
            self.config.queue.max_size_bytes(),
        ));
        let labels = [
            ("exporter", self.id.as_str()),
            ("data_type", signal.as_str()),
        ];
        let weak: Weak<BoundedQueue<Entry>> = Arc::downgrade(&lane);
        self.registry.gauge_fn(
            "otelcol_exporter_queue_size",
            "Current size of the retry queue (in units of the sizer).",
            &labels,
            move || weak.upgrade().map_or(0.0, |q| q.used() as f64),
        );
        let capacity = lane.capacity() as f64;
        self.registry.gauge_fn(
            "otelcol_exporter_queue_capacity",
            "Fixed capacity of the retry queue (in units of the sizer).",
            &labels,
            move || capacity,
        );
        for _ in 0..self.config.queue.num_consumers {
            self.tasks.spawn(self.clone().work(lane.clone(), signal));
        }
        *slot = Some(lane.clone());
        Some(lane)
    }

    /// A worker: sends what the queue holds until it is closed and empty, or
    /// the shutdown deadline passed.
    async fn work(self: Arc<Self>, lane: Lane, signal: Signal) {
        loop {
            let entry = tokio::select! {
                biased;
                _ = self.hard_stop.cancelled() => return,
                next = lane.pop() => match next {
                    Some(entry) => entry,
                    None => return,
                },
            };
            match entry.stored {
                Some(key) => self.process_stored(signal, key, entry.payload).await,
                None => {
                    if let Some(payload) = entry.payload {
                        let _ = self.deliver(payload, false).await;
                    }
                }
            }
        }
    }

    /// Sends a payload (split to the sender's limit), each part with retries.
    /// With `keep`, a shutdown interrupting it hands back what is unsent
    /// instead of dropping it.
    async fn deliver(&self, payload: Payload, keep: bool) -> Delivery {
        let mut result = Ok(());
        let mut progressed = false;
        let mut parts = split_to_fit(payload, self.sender.max_request_bytes()).into_iter();
        while let Some(part) = parts.next() {
            match self.deliver_one(&part, keep).await {
                Ok(()) => {}
                Err(Undelivered::Failed(e)) => result = Err(e),
                Err(Undelivered::Interrupted) => {
                    let unsent = std::iter::once(part).chain(parts).collect();
                    return Delivery::Kept { unsent, progressed };
                }
            }
            progressed = true;
        }
        Delivery::Done(result)
    }

    async fn deliver_one(&self, payload: &Payload, keep: bool) -> Result<(), Undelivered> {
        let signal = payload.signal();
        let items = payload.item_count() as u64;
        let mut backoff: Option<Backoff> = None;
        loop {
            let error = match self.attempt(payload).await {
                Ok(outcome) => {
                    self.record_success(signal, items, &outcome);
                    return Ok(());
                }
                Err(error) => error,
            };
            if keep && self.hard_stop.is_cancelled() {
                return Err(Undelivered::Interrupted);
            }
            if !self.config.retry.enabled || !error.is_retryable() {
                return Err(Undelivered::Failed(self.give_up(
                    signal,
                    items,
                    error,
                    "not retryable",
                )));
            }
            let backoff = backoff.get_or_insert_with(|| Backoff::new(&self.config.retry));
            let Some(delay) = backoff.next_delay(error.retry_after()) else {
                return Err(Undelivered::Failed(self.give_up(
                    signal,
                    items,
                    error,
                    "no more retries left",
                )));
            };
            tracing::debug!(
                exporter = %self.id,
                data_type = signal.as_str(),
                error = %error,
                interval = %duration::format(delay),
                "Exporting failed. Will retry the request after interval."
            );
            if !self.wait_to_retry(delay).await {
                if keep {
                    return Err(Undelivered::Interrupted);
                }
                return Err(Undelivered::Failed(self.give_up(
                    signal,
                    items,
                    error,
                    "the exporter is shutting down, no time left to retry",
                )));
            }
        }
    }

    /// One send, bounded by the timeout and the shutdown deadline.
    async fn attempt(&self, payload: &Payload) -> Result<SendOutcome, ConsumeError> {
        let timeout = self.config.timeout;
        let send = async {
            if timeout.is_zero() {
                return self.sender.send(payload).await;
            }
            match tokio::time::timeout(timeout, self.sender.send(payload)).await {
                Ok(result) => result,
                Err(_) => {
                    self.sender.unanswered();
                    Err(ConsumeError::new(
                        ErrorKind::DeadlineExceeded,
                        format!("request timed out after {}", duration::format(timeout)),
                    ))
                }
            }
        };
        tokio::select! {
            biased;
            _ = self.hard_stop.cancelled() => Err(ConsumeError::unavailable(
                "the shutdown deadline passed while sending",
            )),
            result = send => result,
        }
    }

    /// Waits `delay` before a retry; false when the wait would end after the
    /// shutdown deadline.
    async fn wait_to_retry(&self, delay: Duration) -> bool {
        let wake = Instant::now() + delay;
        if !self.draining.is_cancelled() {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => return true,
                _ = self.draining.cancelled() => {}
            }
        }
        let deadline = *self.deadline.lock();
        if deadline.is_some_and(|d| wake > d) {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => true,
            _ = self.hard_stop.cancelled() => false,
        }
    }

    fn record_success(&self, signal: Signal, items: u64, outcome: &SendOutcome) {
        let rejected = outcome.rejected.min(items);
        self.metrics.sent(signal, items - rejected);
        if rejected > 0 {
            self.metrics.send_failed(signal, rejected);
        }
        if outcome.is_partial()
            && let Some(suppressed) = self.partial_log.check()
        {
            tracing::warn!(
                exporter = %self.id,
                data_type = signal.as_str(),
                rejected_items = outcome.rejected,
                message = %outcome.error_message,
                suppressed,
                "Partial success response: the destination rejected some items"
            );
        }
    }

    fn give_up(&self, signal: Signal, items: u64, error: ConsumeError, why: &str) -> ConsumeError {
        self.metrics.send_failed(signal, items);
        if let Some(suppressed) = self.failure_log.check() {
            tracing::warn!(
                exporter = %self.id,
                data_type = signal.as_str(),
                dropped_items = items,
                error = %error,
                reason = why,
                suppressed,
                "Exporting failed. Dropping data."
            );
        }
        error
    }

    async fn shutdown(&self, deadline: Instant) {
        let lanes: Vec<(Signal, Lane)> = {
            let lanes = self.lanes.lock();
            self.closing.store(true, Ordering::Release);
            Signal::ALL
                .into_iter()
                .filter_map(|s| lanes[lane_index(s)].clone().map(|l| (s, l)))
                .collect()
        };
        for (_, lane) in &lanes {
            lane.close();
        }
        *self.deadline.lock() = Some(deadline);
        self.draining.cancel();
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            self.hard_stop.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, self.tasks.wait()).await;
        }
        for (signal, lane) in lanes {
            let mut left = 0u64;
            let mut kept = Vec::new();
            for entry in lane.drain() {
                match entry.stored {
                    Some(key) => kept.push(key),
                    None => left += entry.payload.map_or(0, |p| p.item_count() as u64),
                }
            }
            if left > 0 {
                self.metrics.send_failed(signal, left);
                tracing::warn!(
                    exporter = %self.id,
                    data_type = signal.as_str(),
                    dropped_items = left,
                    "Shutdown deadline passed with data left in the sending queue. Dropping data."
                );
            }
            let Some(store) = self.store(signal) else {
                continue;
            };
            let (mut requests, mut items) = self.kept.lock()[lane_index(signal)];
            requests += kept.len() as u64;
            items += kept.iter().map(|k| k.items).sum::<u64>();
            store.release(&kept);
            if requests > 0 {
                tracing::info!(
                    exporter = %self.id,
                    data_type = signal.as_str(),
                    kept_requests = requests,
                    kept_items = items,
                    location = store.location(),
                    "Shutdown left undelivered data in the persistent queue; it stays stored and is sent after the next start."
                );
            }
        }
    }
}

/// The reason of a failed push, and the entry it hands back.
fn split_push_error(error: PushError<Entry>) -> (PushError<()>, Entry) {
    match error {
        PushError::Full(entry) => (PushError::Full(()), entry),
        PushError::TooLarge(entry) => (PushError::TooLarge(()), entry),
        PushError::Closed(entry) => (PushError::Closed(()), entry),
    }
}

/// Splits a payload into parts whose protobuf encoding fits `limit` bytes
/// (a part of a single item is sent whatever its size).
pub(crate) fn split_to_fit(payload: Payload, limit: Option<usize>) -> Vec<Payload> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return vec![payload];
    };
    let mut out = Vec::new();
    let mut pending = vec![payload];
    while let Some(mut part) = pending.pop() {
        let len = part.encoded_len();
        let items = part.item_count();
        if len <= limit || items <= 1 {
            out.push(part);
            continue;
        }
        // Enough pieces for the average to fit, each checked again.
        let pieces = len.div_ceil(limit).max(2);
        let per_piece = items.div_ceil(pieces).max(1);
        let mut chunks = Vec::new();
        while part.item_count() > 0 {
            chunks.push(part.split_front(per_piece));
        }
        // Keep the original order: the stack pops the last pushed first.
        pending.extend(chunks.into_iter().rev());
    }
    out
}
