//! One backend: its exporter's transport, its bounded queue of routed
//! batches, and its self-metrics. The workers that drain the queue live in
//! `delivery.rs`; the decisions about where data goes live in `balancer.rs`.
//!
//! Coalescing (`protocol.otlp.sending_queue.batch`): the split of a batch
//! leaves each backend a part of about a third of it, and each part sent on
//! its own costs a request and a compression stream. So the newest queued
//! item of a backend stays *open*: parts admitted after it are appended to
//! it (their received bytes, as segments: nothing is copied) until it holds
//! `min_size`, or `flush_timeout` passed since it opened, or it is flushed
//! (shutdown, a push that is not admission). Workers never take an open
//! item before then. The open item is an ordinary queued item: it counts in
//! the queue's units (each part's units, as admitted), it is drained and
//! re-routed with the rest when the backend leaves the ring, and it is sent,
//! retried and re-routed as one request.

use super::config::Endpoint;
use crate::helper::{Sender, Sizer};
use collector_core::consumer::ConsumeError;
use collector_core::observe::{Counter, Histogram, MetricsRegistry};
use collector_core::pdata::Payload;
use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How the parts queued at a backend are merged before they are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coalesce {
    /// Longest an item stays open for more.
    pub(crate) flush_timeout: Duration,
    /// What `min_size` and `max_size` count.
    pub(crate) sizer: Sizer,
    /// An item holding this much is closed (sent).
    pub(crate) min_size: u64,
    /// An item never grows past this (0: no bound).
    pub(crate) max_size: u64,
}

/// Bounds of `otelcol_loadbalancer_backend_latency`, in milliseconds.
const LATENCY_BOUNDS_MS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// Units of `payload` for a queue measured with `sizer`.
pub(crate) fn units(sizer: Sizer, payload: &Payload) -> u64 {
    match sizer {
        Sizer::Requests => 1,
        Sizer::Items => payload.item_count() as u64,
        Sizer::Bytes => payload.encoded_len() as u64,
    }
}

/// A consume waiting for its data to be delivered (when no queue is
/// configured at either level): counts the parts still on their way.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    remaining: AtomicUsize,
    error: Mutex<Option<ConsumeError>>,
    done: Notify,
}

impl Completion {
    /// `n` more parts to wait for.
    pub(crate) fn add(&self, n: usize) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    /// One part ended; the first failure is what the consume reports.
    pub(crate) fn finish(&self, result: Result<(), &ConsumeError>) {
        if let Err(e) = result {
            self.error.lock().get_or_insert_with(|| e.clone());
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }

    /// Waits until every part ended.
    pub(crate) async fn wait(&self) -> Result<(), ConsumeError> {
        loop {
            let mut done = pin!(self.done.notified());
            done.as_mut().enable();
            if self.remaining.load(Ordering::Acquire) == 0 {
                return match self.error.lock().take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            done.await;
        }
    }
}

/// A routed batch on its way to a backend.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) payload: Payload,
    /// When the exporter accepted the data.
    pub(crate) accepted: Instant,
    /// Re-routing rounds that found every backend failing.
    pub(crate) rounds: u32,
    /// Not to be sent before this (set when every backend is failing).
    pub(crate) not_before: Option<Instant>,
    /// The waiting consume, without a queue.
    pub(crate) completion: Option<Arc<Completion>>,
    /// Units held in the top-level queue.
    pub(crate) global_units: u64,
    /// Units held in the backend queue (set when queued there).
    pub(crate) backend_units: u64,
}

impl Item {
    /// A part of `self` carrying `payload` and the same history; it holds no
    /// top-level queue units (those stay with the first part).
    pub(crate) fn sibling(&self, payload: Payload) -> Item {
        Item {
            payload,
            accepted: self.accepted,
            rounds: self.rounds,
            not_before: self.not_before,
            completion: self.completion.clone(),
            global_units: 0,
            backend_units: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Lane {
    items: VecDeque<Item>,
    used: u64,
    closed: bool,
    /// The back item is open until then (coalescing).
    open_until: Option<Instant>,
    /// Units of the open item, counted with the coalescing sizer.
    open_units: u64,
    /// Flushed for shutdown: no item opens any more.
    no_linger: bool,
}

impl Lane {
    /// Whether the front item may be sent now.
    fn front_ready(&self, now: Instant) -> bool {
        match self.open_until {
            Some(until) if self.items.len() == 1 && !self.closed => now >= until,
            _ => true,
        }
    }
}

/// Per-endpoint self-metrics.
#[derive(Clone, Debug)]
pub(crate) struct BackendMetrics {
    success: Counter,
    failure: Counter,
    latency: Histogram,
}

impl BackendMetrics {
    pub(crate) fn new(registry: &MetricsRegistry, exporter: &str, endpoint: &str) -> Self {
        let outcome = |success: &str| {
            registry.counter(
                "otelcol_loadbalancer_backend_outcome",
                "Number of successes and failures for each endpoint.",
                &[
                    ("exporter", exporter),
                    ("endpoint", endpoint),
                    ("success", success),
                ],
            )
        };
        Self {
            success: outcome("true"),
            failure: outcome("false"),
            latency: registry.histogram(
                "otelcol_loadbalancer_backend_latency",
                "Response latency in ms for the backends.",
                &[("exporter", exporter), ("endpoint", endpoint)],
                &LATENCY_BOUNDS_MS,
            ),
        }
    }

    /// Records one attempt.
    pub(crate) fn attempt(&self, success: bool, started: Instant) {
        if success {
            self.success.inc();
        } else {
            self.failure.inc();
        }
        self.latency
            .record(started.elapsed().as_secs_f64() * 1000.0);
    }
}

/// One backend of the ring.
pub(crate) struct Backend {
    pub(crate) endpoint: Endpoint,
    /// Its transport; replaced by a new one (a new connection) when an
    /// attempt went unanswered (see `Balancer::reconnect`).
    sender: RwLock<Arc<dyn Sender>>,
    pub(crate) metrics: BackendMetrics,
    lane: Mutex<Lane>,
    capacity: Option<u64>,
    sizer: Sizer,
    coalesce: Option<Coalesce>,
    not_empty: Notify,
    /// Notified when queue room frees up (shared by all backends).
    room: Arc<Notify>,
    /// Notified when the backend stops being a routing target (removed or
    /// quarantined), to cut retry waits short.
    pub(crate) changed: Notify,
    /// A routing target of the current ring.
    eligible: AtomicBool,
    /// No longer listed by the resolver.
    removed: AtomicBool,
    /// Has quarantine strikes to forget after a successful send.
    pub(crate) struck: AtomicBool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("endpoint", &self.endpoint)
            .field("queued", &self.lane.lock().items.len())
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub(crate) fn new(
        endpoint: Endpoint,
        sender: Arc<dyn Sender>,
        metrics: BackendMetrics,
        capacity: Option<u64>,
        sizer: Sizer,
        coalesce: Option<Coalesce>,
        room: Arc<Notify>,
    ) -> Self {
        Self {
            endpoint,
            sender: RwLock::new(sender),
            metrics,
            lane: Mutex::new(Lane::default()),
            capacity,
            sizer,
            coalesce,
            not_empty: Notify::new(),
            room,
            changed: Notify::new(),
            eligible: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            struck: AtomicBool::new(false),
        }
    }

    /// The current transport. An attempt keeps the one it started on, so
    /// a replaced transport lives until its last attempt ended.
    pub(crate) fn sender(&self) -> Arc<dyn Sender> {
        self.sender.read().clone()
    }

    /// Whether `sender` is still the current transport.
    pub(crate) fn is_current(&self, sender: &Arc<dyn Sender>) -> bool {
        Arc::ptr_eq(&self.sender.read(), sender)
    }

    /// Puts `new` in place of `old`, unless `old` was already replaced
    /// (several attempts on one dead connection time out together: only
    /// the first replaces it). Returns whether it did.
    pub(crate) fn replace_sender(&self, old: &Arc<dyn Sender>, new: Arc<dyn Sender>) -> bool {
        let mut sender = self.sender.write();
        if !Arc::ptr_eq(&sender, old) {
            return false;
        }
        *sender = new;
        true
    }

    /// The ring's string for this backend.
    pub(crate) fn key(&self) -> &str {
        &self.endpoint.key
    }

    /// Units `payload` takes in this backend's queue.
    pub(crate) fn units(&self, payload: &Payload) -> u64 {
        units(self.sizer, payload)
    }

    /// The queue's capacity, when it has one.
    pub(crate) fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    /// Whether `units` more fit now.
    pub(crate) fn has_room(&self, units: u64) -> bool {
        let lane = self.lane.lock();
        self.capacity.is_none_or(|c| lane.used + units <= c)
    }

    /// Queues `item` whatever the queue holds: used for data already
    /// accepted (admission checked room first; re-routed data must not be
    /// refused). Hands it back when the backend was closed.
    pub(crate) fn push(&self, mut item: Item) -> Result<(), Box<Item>> {
        let mut lane = self.lane.lock();
        if lane.closed {
            return Err(Box::new(item));
        }
        // The open item is no longer the newest: it goes as it is.
        lane.open_until = None;
        item.backend_units = self.units(&item.payload);
        lane.used += item.backend_units;
        lane.items.push_back(item);
        drop(lane);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Queues a newly admitted part, appending it to the open item when
    /// coalescing allows: `Ok(true)` when it was absorbed (it is then part
    /// of an item already held), `Ok(false)` when it was queued as an item
    /// of its own. Hands it back when the backend was closed.
    pub(crate) fn push_admitted(&self, mut item: Item) -> Result<bool, Box<Item>> {
        let Some(coalesce) = self.coalesce else {
            return self.push(item).map(|()| false);
        };
        let mut guard = self.lane.lock();
        let lane = &mut *guard;
        if lane.closed {
            return Err(Box::new(item));
        }
        let units = self.units(&item.payload);
        let size = self::units(coalesce.sizer, &item.payload);
        let now = Instant::now();
        let mergeable = item.completion.is_none() && item.not_before.is_none();
        if lane.open_until.is_some_and(|until| now < until) && mergeable {
            let open_units = lane.open_units;
            if let Some(open) = lane.items.back_mut()
                && (coalesce.max_size == 0 || open_units + size <= coalesce.max_size)
                && open.payload.signal() == item.payload.signal()
            {
                let payload = std::mem::replace(
                    &mut item.payload,
                    Payload::empty(collector_core::pdata::Signal::Traces),
                );
                match open.payload.append(payload) {
                    Ok(()) => {
                        open.accepted = open.accepted.max(item.accepted);
                        open.global_units += item.global_units;
                        open.backend_units += units;
                        lane.used += units;
                        lane.open_units += size;
                        if lane.open_units >= coalesce.min_size {
                            lane.open_until = None;
                            drop(guard);
                            self.not_empty.notify_one();
                        }
                        return Ok(true);
                    }
                    Err(payload) => item.payload = payload,
                }
            }
        }
        lane.open_until = None;
        item.backend_units = units;
        lane.used += units;
        lane.items.push_back(item);
        if mergeable && size < coalesce.min_size && !lane.no_linger {
            lane.open_until = Some(now + coalesce.flush_timeout);
            lane.open_units = size;
        }
        drop(guard);
        self.not_empty.notify_one();
        Ok(false)
    }

    /// Closes the open item, so that it is sent now, and opens no more
    /// (shutdown).
    pub(crate) fn flush(&self) {
        let mut lane = self.lane.lock();
        lane.no_linger = true;
        let was_open = lane.open_until.take().is_some();
        drop(lane);
        if was_open {
            self.not_empty.notify_one();
        }
    }

    /// The oldest queued item, waiting while there is none; `None` once the
    /// backend is closed and empty.
    pub(crate) async fn pop(&self) -> Option<Item> {
        loop {
            let mut notified = pin!(self.not_empty.notified());
            notified.as_mut().enable();
            let open_until = {
                let mut lane = self.lane.lock();
                if lane.front_ready(Instant::now())
                    && let Some(item) = lane.items.pop_front()
                {
                    lane.used -= item.backend_units;
                    let more = !lane.items.is_empty();
                    if !more {
                        lane.open_until = None;
                    }
                    drop(lane);
                    self.room.notify_waiters();
                    if more {
                        self.not_empty.notify_one();
                    }
                    return Some(item);
                }
                if lane.closed && lane.items.is_empty() {
                    return None;
                }
                lane.open_until
            };
            match open_until {
                Some(until) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Takes everything queued.
    pub(crate) fn drain(&self) -> Vec<Item> {
        let mut lane = self.lane.lock();
        lane.used = 0;
        lane.open_until = None;
        let items = lane.items.drain(..).collect();
        drop(lane);
        self.room.notify_waiters();
        items
    }

    /// Refuses further pushes; workers end once the queue is empty.
    pub(crate) fn close(&self) {
        self.lane.lock().closed = true;
        self.not_empty.notify_waiters();
    }

    /// Units queued.
    pub(crate) fn queued_units(&self) -> u64 {
        self.lane.lock().used
    }

    pub(crate) fn is_eligible(&self) -> bool {
        self.eligible.load(Ordering::Acquire)
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Marks whether the current ring routes to this backend.
    pub(crate) fn set_eligible(&self, eligible: bool) {
        let was = self.eligible.swap(eligible, Ordering::AcqRel);
        if was && !eligible {
            self.changed.notify_waiters();
        }
    }

    /// Marks the backend as gone from the resolver's answer and closes it.
    pub(crate) fn remove(&self) {
        self.removed.store(true, Ordering::Release);
        self.eligible.store(false, Ordering::Release);
        self.close();
        self.changed.notify_waiters();
    }
}
