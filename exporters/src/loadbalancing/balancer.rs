//! The routing engine: the current ring and its backends, admission of new
//! data, re-routing of data a backend could not take, quarantine of failing
//! backends, resolver updates and shutdown.
//!
//! Every change of where data goes happens under one lock ([`State`]): the
//! admission of a batch, a new resolver answer, a quarantine, and re-routing.
//! So a batch's parts are queued against one ring generation, and nothing is
//! pushed into the queue of a backend that is being removed.
//!
//! Backpressure: a batch is accepted only if every one of its parts fits its
//! backend's queue (and the top-level queue, when configured), checked and
//! queued under that lock: "reserve first". The alternative, accepting the
//! parts that fit and refusing the rest, would make the sender retry the
//! whole batch and duplicate the parts already accepted. Data already
//! accepted is never refused again: re-routed data is queued at its new
//! owner even above the queue's size (the total stays bounded by what was
//! admitted).

use super::backend::{Backend, Coalesce, Completion, Item, units};
use super::config::Endpoint;
use super::ring::HashRing;
use super::routing::Routes;
use crate::helper::{ExporterMetrics, RetryConfig, SendOutcome, Sender, Sizer};
use collector_core::component::ComponentError;
use collector_core::consumer::{ConsumeError, ErrorKind};
use collector_core::observe::{Counter, Gauge, MetricsRegistry, RateLimitedLog};
use collector_core::pdata::{Payload, Signal};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod membership;

/// How long workers get to stop after the shutdown deadline.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// Makes the transport of a backend.
pub(crate) type Connector =
    Arc<dyn Fn(&Endpoint) -> Result<Arc<dyn Sender>, ComponentError> + Send + Sync>;

/// The engine's settings, derived from the config.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Capacity of each backend's queue (`None`: unbounded).
    pub(crate) backend_capacity: Option<u64>,
    pub(crate) backend_sizer: Sizer,
    /// Workers per backend.
    pub(crate) workers: usize,
    /// Capacity of everything held (`None`: no such bound).
    pub(crate) global_capacity: Option<u64>,
    pub(crate) global_sizer: Sizer,
    /// Wait for room instead of refusing.
    pub(crate) block_on_overflow: bool,
    /// No queue at either level: a consume waits for delivery.
    pub(crate) synchronous: bool,
    /// Limit of a consume's wait; zero = none.
    pub(crate) consume_timeout: Duration,
    /// Limit of one send attempt; zero = none.
    pub(crate) attempt_timeout: Duration,
    /// Retries on the same backend.
    pub(crate) backend_retry: RetryConfig,
    /// The top-level `retry_on_failure`: when enabled, data undeliverable for
    /// `max_elapsed_time` is dropped; its intervals space the rounds when
    /// every backend is failing.
    pub(crate) reroute: RetryConfig,
    /// First quarantine of a failing backend; doubles per strike.
    pub(crate) quarantine_base: Duration,
    /// Longest quarantine.
    pub(crate) quarantine_max: Duration,
    /// Merging of the parts queued at each backend (`None`: each part is
    /// sent on its own).
    pub(crate) coalesce: Option<Coalesce>,
}

/// A snapshot of where data goes.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    pub(crate) generation: u64,
    /// The ring over the backends that take data now.
    pub(crate) ring: HashRing,
    /// The backends, in the order of `ring.endpoints()`.
    pub(crate) backends: Vec<Arc<Backend>>,
    /// Every listed backend is quarantined, so all of them are used.
    pub(crate) fail_open: bool,
}

#[derive(Debug)]
struct Quarantine {
    /// Excluded from the ring until then; `None` once it ended (the strikes
    /// are kept until a send succeeds).
    until: Option<Instant>,
    strikes: u32,
}

#[derive(Default)]
struct State {
    generation: u64,
    /// The resolver's latest answer, sorted by key.
    resolved: Vec<Endpoint>,
    backends: BTreeMap<String, Arc<Backend>>,
    quarantine: HashMap<String, Quarantine>,
    /// Accepted data with no backend to go to (the resolver lists none).
    orphans: Vec<Item>,
}

/// Self-metrics of the balancer itself.
pub(crate) struct BalancerMetrics {
    pub(crate) num_backends: Gauge,
    pub(crate) resolutions_ok: Counter,
    pub(crate) resolutions_failed: Counter,
    pub(crate) backend_updates: Counter,
}

impl BalancerMetrics {
    pub(crate) fn new(registry: &MetricsRegistry, exporter: &str, resolver: &str) -> Self {
        let labels = [("exporter", exporter), ("resolver", resolver)];
        let resolutions = |success: &str| {
            registry.counter(
                "otelcol_loadbalancer_num_resolutions",
                "Number of times the resolver has triggered new resolutions.",
                &[
                    ("exporter", exporter),
                    ("resolver", resolver),
                    ("success", success),
                ],
            )
        };
        Self {
            num_backends: registry.gauge(
                "otelcol_loadbalancer_num_backends",
                "Current number of backends in use.",
                &labels,
            ),
            resolutions_ok: resolutions("true"),
            resolutions_failed: resolutions("false"),
            backend_updates: registry.counter(
                "otelcol_loadbalancer_num_backend_updates",
                "Number of times the list of backends was updated.",
                &labels,
            ),
        }
    }
}

/// The engine shared by the exporter, its workers and its resolver task.
pub(crate) struct Balancer {
    pub(crate) id: String,
    routes: Routes,
    pub(crate) settings: Settings,
    connect: Connector,
    registry: Arc<MetricsRegistry>,
    state: Mutex<State>,
    routing: RwLock<Arc<Routing>>,
    /// Notified when queue room frees up.
    room: Arc<Notify>,
    /// Notified when nothing is held any more.
    idle: Notify,
    /// Items (queued, in flight or orphaned) not yet delivered or dropped.
    held: AtomicU64,
    /// Units held against the top-level queue.
    global_used: AtomicU64,
    closing: AtomicBool,
    /// Ends the resolver task.
    pub(crate) stop: CancellationToken,
    /// Ends the workers (the shutdown deadline passed).
    pub(crate) hard_stop: CancellationToken,
    /// Notified when a quarantine begins, for the resolver task's timer.
    pub(crate) quarantine_changed: Notify,
    pub(crate) tasks: TaskTracker,
    pub(crate) metrics: ExporterMetrics,
    pub(crate) lb_metrics: BalancerMetrics,
    drop_log: RateLimitedLog,
    pub(crate) retry_log: RateLimitedLog,
    fallback_warned: [AtomicBool; 3],
    fallbacks: Vec<Signal>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("id", &self.id)
            .field("routes", &self.routes)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl Balancer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        routes: Routes,
        fallbacks: Vec<Signal>,
        settings: Settings,
        connect: Connector,
        registry: Arc<MetricsRegistry>,
        resolver_label: &str,
    ) -> Self {
        Self {
            metrics: ExporterMetrics::new(&registry, &id),
            lb_metrics: BalancerMetrics::new(&registry, &id, resolver_label),
            id,
            routes,
            settings,
            connect,
            registry,
            state: Mutex::new(State::default()),
            routing: RwLock::new(Arc::new(Routing::default())),
            room: Arc::new(Notify::new()),
            idle: Notify::new(),
            held: AtomicU64::new(0),
            global_used: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            quarantine_changed: Notify::new(),
            tasks: TaskTracker::new(),
            drop_log: RateLimitedLog::default(),
            retry_log: RateLimitedLog::default(),
            fallback_warned: Default::default(),
            fallbacks,
        }
    }

    /// The current routing snapshot.
    pub(crate) fn routing(&self) -> Arc<Routing> {
        self.routing.read().clone()
    }

    /// The resolver's latest endpoints.
    pub(crate) fn resolved(&self) -> Vec<Endpoint> {
        self.state.lock().resolved.clone()
    }

    /// Units queued at each backend, by ring key.
    pub(crate) fn queued(&self) -> BTreeMap<String, u64> {
        self.state
            .lock()
            .backends
            .iter()
            .map(|(k, b)| (k.clone(), b.queued_units()))
            .collect()
    }

    /// Items held (queued, in flight or waiting for a backend).
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    fn shutting_down(&self) -> ConsumeError {
        ConsumeError::unavailable(format!("exporter {} is shutting down", self.id))
    }

    fn no_backends(&self) -> ConsumeError {
        ConsumeError::unavailable(format!(
            "exporter {} has no backends: the resolver has not found any yet",
            self.id
        ))
    }

    /// Takes a batch: routes it and queues its parts (or, without queues,
    /// waits until they are delivered).
    pub(crate) async fn consume(self: &Arc<Self>, payload: Payload) -> Result<(), ConsumeError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(self.shutting_down());
        }
        let items = payload.item_count() as u64;
        if items == 0 {
            return Ok(());
        }
        let signal = payload.signal();
        self.warn_fallback(signal);
        let deadline = (!self.settings.consume_timeout.is_zero())
            .then(|| Instant::now() + self.settings.consume_timeout);
        let completion = self
            .settings
            .synchronous
            .then(|| Arc::new(Completion::default()));
        if let Err(error) = self.admit(payload, completion.clone(), deadline).await {
            self.metrics.enqueue_failed(signal, items);
            return Err(error);
        }
        let Some(completion) = completion else {
            return Ok(());
        };
        let wait = completion.wait();
        let deadline =
            deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::select! {
            result = wait => result,
            _ = tokio::time::sleep_until(deadline) => Err(ConsumeError::new(
                ErrorKind::DeadlineExceeded,
                format!("exporter {}: delivery did not finish within the timeout", self.id),
            )),
        }
    }

    fn warn_fallback(&self, signal: Signal) {
        if self.fallbacks.contains(&signal)
            && !self.fallback_warned[signal_index(signal)].swap(true, Ordering::AcqRel)
        {
            tracing::warn!(
                exporter = %self.id,
                data_type = signal.as_str(),
                routing_key = self.routes.key(signal).as_str(),
                "The configured routing_key does not apply to this signal; routing by the signal's default key instead"
            );
        }
    }

    /// Queues the parts of `payload` if all of them fit; waits for room when
    /// `block_on_overflow`.
    async fn admit(
        self: &Arc<Self>,
        payload: Payload,
        completion: Option<Arc<Completion>>,
        deadline: Option<Instant>,
    ) -> Result<(), ConsumeError> {
        let mut routing = self.routing();
        if routing.ring.is_empty() {
            return Err(self.no_backends());
        }
        let mut parts = self.routes.split(payload, &routing.ring);
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            {
                let state = self.state.lock();
                if state.generation != routing.generation {
                    drop(state);
                    routing = self.routing();
                    if routing.ring.is_empty() {
                        return Err(self.no_backends());
                    }
                    parts = self.resplit(parts, &routing);
                    continue;
                }
                match self.fits(&parts, &routing)? {
                    true => {
                        self.queue_admitted(parts, &routing, completion);
                        return Ok(());
                    }
                    false if !self.settings.block_on_overflow => {
                        return Err(ConsumeError::resource_exhausted(
                            format!("sending queue is full (exporter {})", self.id),
                            None,
                        ));
                    }
                    false => {}
                }
            }
            let deadline =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
            tokio::select! {
                _ = room => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ConsumeError::resource_exhausted(
                        format!("sending queue is full (exporter {}) and stayed full until the timeout", self.id),
                        None,
                    ));
                }
                _ = self.hard_stop.cancelled() => return Err(self.shutting_down()),
            }
            if self.closing.load(Ordering::Acquire) {
                return Err(self.shutting_down());
            }
        }
    }

    /// Splits already-split parts again for a newer ring.
    fn resplit(&self, parts: Vec<(usize, Payload)>, routing: &Routing) -> Vec<(usize, Payload)> {
        let mut iter = parts.into_iter().map(|(_, p)| p);
        let Some(mut all) = iter.next() else {
            return Vec::new();
        };
        for part in iter {
            // Parts of one batch share its signal, so this cannot fail.
            let _ = all.append(part);
        }
        self.routes.split(all, &routing.ring)
    }

    /// Whether every part fits its backend's queue and the top-level queue;
    /// an error when one can never fit.
    fn fits(&self, parts: &[(usize, Payload)], routing: &Routing) -> Result<bool, ConsumeError> {
        let too_large = |units: u64, capacity: u64, sizer: Sizer| {
            ConsumeError::invalid(format!(
                "a request of {units} {} is larger than the sending queue of exporter {} ({capacity} {})",
                sizer.as_str(),
                self.id,
                sizer.as_str(),
            ))
        };
        let mut fits = true;
        if let Some(capacity) = self.settings.global_capacity {
            let sizer = self.settings.global_sizer;
            let needed: u64 = parts.iter().map(|(_, p)| units(sizer, p)).sum();
            if needed > capacity {
                return Err(too_large(needed, capacity, sizer));
            }
            fits &= self.global_used.load(Ordering::Acquire) + needed <= capacity;
        }
        for (owner, part) in parts {
            let backend = &routing.backends[*owner];
            let needed = backend.units(part);
            if let Some(capacity) = backend.capacity()
                && needed > capacity
            {
                return Err(too_large(needed, capacity, self.settings.backend_sizer));
            }
            fits &= backend.has_room(needed);
        }
        Ok(fits)
    }

    /// Queues admitted parts (the state lock is held by the caller).
    fn queue_admitted(
        &self,
        parts: Vec<(usize, Payload)>,
        routing: &Routing,
        completion: Option<Arc<Completion>>,
    ) {
        let now = Instant::now();
        if let Some(c) = &completion {
            c.add(parts.len());
        }
        self.held.fetch_add(parts.len() as u64, Ordering::AcqRel);
        for (owner, payload) in parts {
            let global_units = if self.settings.global_capacity.is_some() {
                units(self.settings.global_sizer, &payload)
            } else {
                0
            };
            self.global_used.fetch_add(global_units, Ordering::AcqRel);
            let item = Item {
                payload,
                accepted: now,
                rounds: 0,
                not_before: None,
                completion: completion.clone(),
                global_units,
                backend_units: 0,
            };
            // The generation was checked under the lock, so the backend is open.
            match routing.backends[owner].push_admitted(item) {
                Ok(false) => {}
                // Part of an item already held now.
                Ok(true) => self.absorbed(),
                Err(item) => self.finish_failed(*item, &self.shutting_down(), "the backend closed"),
            }
        }
    }

    /// Hands data a backend could not deliver back to the router.
    pub(crate) fn reroute(&self, items: Vec<Item>) {
        let mut state = self.state.lock();
        self.reroute_locked(&mut state, items);
    }

    fn reroute_locked(&self, state: &mut State, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let routing = self.routing();
        for item in items {
            if self.expired(&item) {
                let error = ConsumeError::unavailable("no backend took the data in time");
                self.finish_failed(
                    item,
                    &error,
                    "undeliverable for longer than retry_on_failure.max_elapsed_time",
                );
                continue;
            }
            if routing.ring.is_empty() {
                state.orphans.push(item);
                continue;
            }
            let mut item = item;
            let payload = std::mem::replace(&mut item.payload, Payload::empty(Signal::Traces));
            let mut parts = self.routes.split(payload, &routing.ring).into_iter();
            let Some((first_owner, first_payload)) = parts.next() else {
                self.release(&item, Ok(()));
                continue;
            };
            let siblings: Vec<(usize, Item)> = parts.map(|(o, p)| (o, item.sibling(p))).collect();
            self.add_held(&item, siblings.len());
            item.payload = first_payload;
            for (owner, mut part) in std::iter::once((first_owner, item)).chain(siblings) {
                self.pace(&mut part, &routing);
                if let Err(part) = routing.backends[owner].push(part) {
                    state.orphans.push(*part);
                }
            }
        }
    }

    /// A held part was appended to another held item.
    fn absorbed(&self) {
        if self.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// `n` more parts of `item` are on their way.
    pub(crate) fn add_held(&self, item: &Item, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(c) = &item.completion {
            c.add(n);
        }
        self.held.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// When every backend is failing, spaces the rounds of re-routed data
    /// with the top-level retry intervals.
    fn pace(&self, item: &mut Item, routing: &Routing) {
        if !routing.fail_open {
            return;
        }
        item.rounds = item.rounds.saturating_add(1);
        let retry = &self.settings.reroute;
        let mut delay = retry.initial_interval.as_secs_f64();
        for _ in 1..item.rounds.min(64) {
            delay *= retry.multiplier.max(1.0);
            if delay >= retry.max_interval.as_secs_f64() {
                break;
            }
        }
        let delay = Duration::try_from_secs_f64(delay)
            .unwrap_or(retry.max_interval)
            .min(retry.max_interval);
        item.not_before = Some(Instant::now() + delay);
    }

    fn expired(&self, item: &Item) -> bool {
        let retry = &self.settings.reroute;
        retry.enabled
            && !retry.max_elapsed_time.is_zero()
            && item.accepted.elapsed() > retry.max_elapsed_time
    }

    /// A send succeeded: the destination took `outcome`'s share.
    pub(crate) fn finish_sent(&self, item: Item, outcome: &SendOutcome) {
        let signal = item.payload.signal();
        let items = item.payload.item_count() as u64;
        let rejected = outcome.rejected.min(items);
        self.metrics.sent(signal, items - rejected);
        if rejected > 0 {
            self.metrics.send_failed(signal, rejected);
        }
        if outcome.is_partial()
            && let Some(suppressed) = self.drop_log.check()
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
        self.release(&item, Ok(()));
    }

    /// Gives up on `item`: counted as failed and logged.
    pub(crate) fn finish_failed(&self, item: Item, error: &ConsumeError, why: &str) {
        let signal = item.payload.signal();
        let items = item.payload.item_count() as u64;
        self.metrics.send_failed(signal, items);
        if let Some(suppressed) = self.drop_log.check() {
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
        self.release(&item, Err(error));
    }

    fn release(&self, item: &Item, result: Result<(), &ConsumeError>) {
        if let Some(c) = &item.completion {
            c.finish(result);
        }
        if item.global_units > 0 {
            self.global_used
                .fetch_sub(item.global_units, Ordering::AcqRel);
            self.room.notify_waiters();
        }
        if self.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Stops taking data, lets what is held be delivered until `deadline`,
    /// then drops (counting) what is left.
    pub(crate) async fn shutdown(&self, deadline: Instant) {
        self.closing.store(true, Ordering::Release);
        self.stop.cancel();
        let open: Vec<Arc<Backend>> = self.state.lock().backends.values().cloned().collect();
        for backend in &open {
            backend.flush();
        }
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.held.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                _ = idle => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.hard_stop.cancel();
        let backends: Vec<Arc<Backend>> = self.state.lock().backends.values().cloned().collect();
        for backend in &backends {
            backend.close();
        }
        self.tasks.close();
        let _ = tokio::time::timeout(STOP_GRACE, self.tasks.wait()).await;
        let mut left: Vec<Item> = backends.iter().flat_map(|b| b.drain()).collect();
        left.append(&mut self.state.lock().orphans);
        if left.is_empty() {
            return;
        }
        let error = self.shutting_down();
        for item in left {
            self.finish_failed(
                item,
                &error,
                "the shutdown deadline passed with data still queued",
            );
        }
    }
}
