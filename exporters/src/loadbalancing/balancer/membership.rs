//! Who the backends are: the resolver's answers, the quarantine of failing
//! backends, and the ring published for them. Each change re-routes the
//! data that was queued for a backend that stopped being a target.

use super::{Balancer, Quarantine, Routing, State};
use crate::helper::Sender;
use crate::loadbalancing::backend::{Backend, BackendMetrics, Item};
use crate::loadbalancing::config::Endpoint;
use crate::loadbalancing::ring::HashRing;
use collector_core::component::ComponentError;
use collector_core::consumer::ConsumeError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl Balancer {
    /// Sets the resolver's answer: creates the backends that joined,
    /// removes (and re-routes the queues of) those that left.
    pub(crate) fn set_endpoints(self: &Arc<Self>, mut endpoints: Vec<Endpoint>) {
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.key == b.key);
        let mut state = self.state.lock();
        if state.resolved == endpoints && state.generation > 0 {
            return;
        }
        let mut drained = Vec::new();
        let mut removed = Vec::new();
        let keep: Vec<&str> = endpoints.iter().map(|e| e.key.as_str()).collect();
        let gone: Vec<String> = state
            .backends
            .keys()
            .filter(|k| !keep.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            if let Some(backend) = state.backends.remove(&key) {
                backend.remove();
                drained.extend(backend.drain());
                removed.push(key.clone());
            }
            state.quarantine.remove(&key);
        }
        let mut added = Vec::new();
        let mut listed = Vec::new();
        for endpoint in endpoints {
            if !state.backends.contains_key(&endpoint.key) {
                match self.add_backend(&endpoint) {
                    Ok(backend) => {
                        state.backends.insert(endpoint.key.clone(), backend);
                        added.push(endpoint.key.clone());
                    }
                    Err(e) => {
                        if let Some(suppressed) = self.retry_log.check() {
                            tracing::error!(
                                exporter = %self.id,
                                endpoint = %endpoint.dial,
                                error = %e,
                                suppressed,
                                "cannot create the exporter of a backend; leaving it out"
                            );
                        }
                        continue;
                    }
                }
            }
            listed.push(endpoint);
        }
        state.resolved = listed;
        self.lb_metrics
            .num_backends
            .set(state.resolved.len() as i64);
        self.lb_metrics.backend_updates.inc();
        tracing::info!(
            exporter = %self.id,
            backends = ?state.resolved.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            added = ?added,
            removed = ?removed,
            requeued_requests = drained.len(),
            "Backends updated"
        );
        self.rebuild(&mut state);
        self.reroute_locked(&mut state, drained);
    }

    fn add_backend(self: &Arc<Self>, endpoint: &Endpoint) -> Result<Arc<Backend>, ComponentError> {
        let sender = (self.connect)(endpoint)?;
        let backend = Arc::new(Backend::new(
            endpoint.clone(),
            sender,
            BackendMetrics::new(&self.registry, &self.id, &endpoint.key),
            self.settings.backend_capacity,
            self.settings.backend_sizer,
            self.settings.coalesce,
            self.room.clone(),
        ));
        for _ in 0..self.settings.workers.max(1) {
            self.tasks.spawn(crate::loadbalancing::delivery::work(
                self.clone(),
                backend.clone(),
            ));
        }
        Ok(backend)
    }

    /// Publishes a new routing over the listed, unquarantined backends; the
    /// queues of backends that stopped being targets, and the orphans, are
    /// routed again.
    fn rebuild(&self, state: &mut State) {
        let now = Instant::now();
        let active = |key: &str| {
            state
                .quarantine
                .get(key)
                .is_some_and(|q| q.until.is_some_and(|u| u > now))
        };
        // Only endpoints with a backend (one whose exporter could not be
        // built is left out), so the ring and `backends` stay aligned.
        let listed: Vec<&Endpoint> = state
            .resolved
            .iter()
            .filter(|e| state.backends.contains_key(&e.key))
            .collect();
        let mut targets: Vec<&Endpoint> =
            listed.iter().copied().filter(|e| !active(&e.key)).collect();
        let fail_open = targets.is_empty() && !listed.is_empty();
        if fail_open {
            targets = listed;
        }
        let keys: Vec<&str> = targets.iter().map(|e| e.key.as_str()).collect();
        let ring = HashRing::new(&keys);
        let backends: Vec<Arc<Backend>> = ring
            .endpoints()
            .iter()
            .filter_map(|k| state.backends.get(k).cloned())
            .collect();
        state.generation += 1;
        let routing = Arc::new(Routing {
            generation: state.generation,
            ring,
            backends,
            fail_open,
        });
        let mut requeue = Vec::new();
        for (key, backend) in &state.backends {
            let eligible = routing.ring.endpoints().iter().any(|k| k == key);
            backend.set_eligible(eligible);
            if !eligible {
                requeue.extend(backend.drain());
            }
        }
        *self.routing.write() = routing;
        requeue.append(&mut state.orphans);
        self.reroute_locked(state, requeue);
    }

    /// Excludes a failing backend from the ring for a while (longer after
    /// each strike, until a send succeeds) and re-routes its queue.
    pub(crate) fn quarantine(&self, backend: &Backend, error: &ConsumeError) {
        let mut state = self.state.lock();
        if backend.is_removed() || !state.backends.contains_key(backend.key()) {
            return;
        }
        let now = Instant::now();
        let entry = state
            .quarantine
            .entry(backend.key().to_string())
            .or_insert(Quarantine {
                until: None,
                strikes: 0,
            });
        if entry.until.is_some_and(|u| u > now) {
            return;
        }
        entry.strikes = entry.strikes.saturating_add(1);
        let factor = 1u32 << (entry.strikes - 1).min(16);
        let duration = self
            .settings
            .quarantine_base
            .saturating_mul(factor)
            .min(self.settings.quarantine_max);
        entry.until = Some(now + duration);
        let strikes = entry.strikes;
        backend.struck.store(true, Ordering::Release);
        tracing::warn!(
            exporter = %self.id,
            endpoint = %backend.endpoint.dial,
            error = %error,
            strikes,
            quarantine = ?duration,
            "Backend is failing: routing its share to the other backends for a while"
        );
        self.rebuild(&mut state);
        drop(state);
        self.quarantine_changed.notify_waiters();
    }

    /// Gives `backend` a new transport in place of `dead`, whose attempt
    /// went unanswered until the attempt timeout: the next attempt (after
    /// the quarantine) dials a new connection instead of reusing this one.
    ///
    /// A timeout with no answer says nothing about whether the connection
    /// is alive. After a blackhole (the path swallows the bytes, the
    /// connection is never reset) it is dead, but nothing closes it:
    /// keepalive pings would, yet with the defaults (`keepalive.time` 10s,
    /// `permit_without_stream: false`, as otelcol) pings go only while a
    /// request is open, and each request ends at `timeout` (5s) first; TCP
    /// gives up only after many minutes of retransmissions, or never when
    /// something on the path still acknowledges the bytes. otelcol (grpc-go)
    /// keeps a connection whose RPC passed its deadline and relies on
    /// keepalive alone, so it has the same weakness with these defaults.
    /// Here a connection whose request went unanswered is not trusted
    /// again: its requests still in flight end as they would, then it is
    /// closed. The cost for a backend that is merely slow is one new
    /// connection.
    pub(crate) fn reconnect(&self, backend: &Backend, dead: &Arc<dyn Sender>) {
        if backend.is_removed() || !backend.is_current(dead) {
            return;
        }
        match (self.connect)(&backend.endpoint) {
            Ok(sender) => {
                if backend.replace_sender(dead, sender) {
                    tracing::info!(
                        exporter = %self.id,
                        endpoint = %backend.endpoint.dial,
                        "A request to the backend went unanswered: its connection is dropped, the next attempt dials a new one"
                    );
                }
            }
            Err(e) => {
                if let Some(suppressed) = self.retry_log.check() {
                    tracing::error!(
                        exporter = %self.id,
                        endpoint = %backend.endpoint.dial,
                        error = %e,
                        suppressed,
                        "cannot create a new exporter for a backend; keeping its connection"
                    );
                }
            }
        }
    }

    /// A send to `backend` succeeded: forget its strikes once its quarantine ended.
    pub(crate) fn healthy(&self, backend: &Backend) {
        if !backend.struck.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock();
        if state
            .quarantine
            .get(backend.key())
            .is_some_and(|q| q.until.is_none())
        {
            state.quarantine.remove(backend.key());
            backend.struck.store(false, Ordering::Release);
        }
    }

    /// Ends the quarantines that are over; returns when the next one ends.
    pub(crate) fn expire_quarantines(&self) -> Option<Instant> {
        let mut state = self.state.lock();
        let now = Instant::now();
        let mut ended = Vec::new();
        let mut next: Option<Instant> = None;
        for (key, q) in state.quarantine.iter_mut() {
            match q.until {
                Some(u) if u <= now => {
                    q.until = None;
                    ended.push(key.clone());
                }
                Some(u) => next = Some(next.map_or(u, |n| n.min(u))),
                None => {}
            }
        }
        if !ended.is_empty() {
            tracing::info!(exporter = %self.id, endpoints = ?ended, "Backends back in the ring after their quarantine");
            self.rebuild(&mut state);
        }
        next
    }

    /// Drops orphans that waited longer than the re-route limit.
    pub(crate) fn age_orphans(&self) {
        let mut state = self.state.lock();
        if state.orphans.is_empty() {
            return;
        }
        let (expired, kept): (Vec<Item>, Vec<Item>) = std::mem::take(&mut state.orphans)
            .into_iter()
            .partition(|item| self.expired(item));
        state.orphans = kept;
        drop(state);
        for item in expired {
            self.finish_failed(
                item,
                &ConsumeError::unavailable("no backend was available"),
                "undeliverable for longer than retry_on_failure.max_elapsed_time",
            );
        }
    }
}
