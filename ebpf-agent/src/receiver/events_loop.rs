//! The hot path: reads the probes' ring buffer, assembles HTTP exchanges,
//! turns them into spans (and RED observations), and batches the spans per
//! process for the pipeline.

use super::telemetry::{Telemetry, follow};
use crate::clock::BootClock;
use crate::events;
use crate::http::{Assembler, AssemblerStats, Exchange};
use crate::process::ProcessInfo;
use crate::process::scan::Selection;
use crate::red::RedMetrics;
use crate::resource::{self, ResourceSettings};
use crate::span::{self, SpanContext, ids::IdGenerator};
use aya::maps::{MapData, RingBuf};
use collector_core::observe::RateLimitedLog;
use collector_core::pdata::{Payload, Traces};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

/// Spans held before a batch goes to the pipeline regardless of time.
const FLUSH_SPANS: usize = 512;
/// Longest a span waits in the agent before its batch goes.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Records handled before the loop checks its timers again.
const DRAIN_BUDGET: usize = 8192;
/// Drains (of up to [`DRAIN_BUDGET`] records) at shutdown.
const FINAL_DRAINS: usize = 16;
/// How long a retired process's info is kept for its last events.
const RETIRED_GRACE: Duration = Duration::from_secs(10);
/// How often the boot-to-Unix clock offset is re-measured.
const CLOCK_REFRESH: Duration = Duration::from_secs(10);

/// State of the events loop.
pub(crate) struct EventsLoop {
    pub(crate) assembler: Assembler,
    pub(crate) selection: Arc<RwLock<Selection>>,
    pub(crate) retired_rx: mpsc::UnboundedReceiver<Arc<ProcessInfo>>,
    pub(crate) resources: ResourceSettings,
    pub(crate) red: Option<Arc<Mutex<RedMetrics>>>,
    /// Where span batches go; `None` when no traces pipeline uses the receiver.
    pub(crate) spans_tx: Option<mpsc::Sender<Payload>>,
    pub(crate) telemetry: Telemetry,
    /// How often the ring is read without a wake-up from the probes (they
    /// only wake the agent once it is well filled); `None` when they wake
    /// it on every event.
    pub(crate) poll_interval: Option<Duration>,
}

struct State {
    retired: HashMap<u32, (Arc<ProcessInfo>, Instant)>,
    /// By pid: the process and pod-index generation it was built for.
    resource_cache: HashMap<u32, (Arc<ProcessInfo>, u64, Resource)>,
    clock: BootClock,
    clock_measured: Instant,
    ids: IdGenerator,
    pending: BTreeMap<u32, Vec<Span>>,
    pending_spans: usize,
    exchanges: Vec<Exchange>,
    stats: AssemblerStats,
    drop_log: RateLimitedLog,
}

/// The scope every span and metric of the agent carries.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: crate::SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// The resource of `pid` when nothing is known about it any more.
fn unknown_process(pid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        exe_name: "unknown_service".to_string(),
        ..Default::default()
    }
}

impl EventsLoop {
    /// Runs until `stop` turns true, then drains the ring and flushes.
    pub(crate) async fn run(
        mut self,
        ring: RingBuf<MapData>,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        // SAFETY: the ring buffer map owns its fd, which stays open and
        // unchanged until the map is dropped, with the AsyncFd.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                .map_err(std::io::Error::from)?;
        let mut state = State {
            retired: HashMap::new(),
            resource_cache: HashMap::new(),
            clock: BootClock::measure(),
            clock_measured: Instant::now(),
            ids: IdGenerator::new(),
            pending: BTreeMap::new(),
            pending_spans: 0,
            exchanges: Vec::new(),
            stats: AssemblerStats::default(),
            drop_log: RateLimitedLog::new(Duration::from_secs(10)),
        };
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a poll interval the timer never fires: a day is as good as
        // never, and keeps one select! arm for both cases.
        let mut poll =
            tokio::time::interval(self.poll_interval.unwrap_or(Duration::from_secs(86_400)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    if self.drain(guard.get_inner_mut(), &mut state) {
                        guard.clear_ready();
                    }
                }
                _ = poll.tick() => {
                    // Until the ring is empty or the budget says to look at
                    // the other timers; the next tick continues.
                    self.drain(ring.get_mut(), &mut state);
                }
                _ = ticker.tick() => self.housekeeping(&mut state),
                Some(process) = self.retired_rx.recv() => self.retire(process, &mut state),
                _ = stop.changed() => break,
            }
            if state.pending_spans >= FLUSH_SPANS {
                self.flush(&mut state);
            }
        }
        // Last events, then everything still open is finished as it stands.
        // Bounded: the probes stay attached until the receiver is dropped,
        // so a busy node would never let the ring run empty.
        for _ in 0..FINAL_DRAINS {
            if self.drain(ring.get_mut(), &mut state) {
                break;
            }
        }
        let mut out = std::mem::take(&mut state.exchanges);
        self.assembler.expire(u64::MAX, &mut out);
        self.emit(&mut out, &mut state);
        state.exchanges = out;
        self.flush(&mut state);
        Ok(())
    }

    /// Handles up to a budget of records; true when the ring is empty.
    fn drain(&mut self, ring: &mut RingBuf<MapData>, state: &mut State) -> bool {
        let mut out = std::mem::take(&mut state.exchanges);
        let mut handled = 0usize;
        let mut empty = false;
        while handled < DRAIN_BUDGET {
            let Some(record) = ring.next() else {
                empty = true;
                break;
            };
            handled += 1;
            match events::decode(&record) {
                Ok(event) => self.assembler.on_event(&event, &mut out),
                Err(e) => {
                    self.telemetry.undecodable_events.inc();
                    if let Some(suppressed) = state.drop_log.check() {
                        tracing::warn!(error = %e, suppressed, "undecodable probe record");
                    }
                }
            }
        }
        self.telemetry.events.add(handled as u64);
        self.emit(&mut out, state);
        state.exchanges = out;
        empty
    }

    fn process(&self, pid: u32, state: &State) -> Option<Arc<ProcessInfo>> {
        if let Some(p) = self
            .selection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
        {
            return Some(Arc::clone(p));
        }
        state.retired.get(&pid).map(|(p, _)| Arc::clone(p))
    }

    /// Turns finished exchanges into spans and RED observations.
    fn emit(&mut self, exchanges: &mut Vec<Exchange>, state: &mut State) {
        if exchanges.is_empty() {
            return;
        }
        self.telemetry.exchanges.add(exchanges.len() as u64);
        let mut red = self
            .red
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()));
        for exchange in exchanges.drain(..) {
            let pid = exchange.conn.tgid;
            let process = self.process(pid, state);
            let ctx = SpanContext {
                clock: &state.clock,
                process: process.as_deref(),
            };
            let span = span::build(&exchange, &ctx, &mut state.ids);
            if let Some(red) = red.as_mut() {
                red.record(pid, &span);
            }
            if self.spans_tx.is_some() {
                state.pending.entry(pid).or_default().push(span);
                state.pending_spans += 1;
                if state.pending_spans >= FLUSH_SPANS {
                    // Batches of at most FLUSH_SPANS, as the queue is sized.
                    self.flush(state);
                }
            }
        }
    }

    fn resource_of(&self, pid: u32, state: &mut State) -> Resource {
        let process = self
            .process(pid, state)
            .unwrap_or_else(|| Arc::new(unknown_process(pid)));
        let generation = self.resources.generation();
        if let Some((cached, built_at, resource)) = state.resource_cache.get(&pid)
            && Arc::ptr_eq(cached, &process)
            && *built_at == generation
        {
            return resource.clone();
        }
        let resource = resource::resource(&self.resources, &process);
        state
            .resource_cache
            .insert(pid, (process, generation, resource.clone()));
        resource
    }

    /// Sends the pending spans as one request, one resource per process.
    fn flush(&self, state: &mut State) {
        let Some(tx) = self.spans_tx.clone() else {
            return;
        };
        if state.pending_spans == 0 {
            return;
        }
        let pending = std::mem::take(&mut state.pending);
        let count = state.pending_spans;
        state.pending_spans = 0;
        let resource_spans = pending
            .into_iter()
            .map(|(pid, spans)| ResourceSpans {
                resource: Some(self.resource_of(pid, state)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest { resource_spans };
        if tx.try_send(Payload::Traces(Traces::new(request))).is_err() {
            self.telemetry.dropped_spans_queue_full.add(count as u64);
            if let Some(suppressed) = state.drop_log.check() {
                tracing::warn!(
                    spans = count,
                    suppressed,
                    "the pipeline is not keeping up: spans dropped (queue_size)"
                );
            }
        }
    }

    fn retire(&mut self, process: Arc<ProcessInfo>, state: &mut State) {
        let pid = process.pid;
        // A new process with the same pid keeps the connections it made.
        let successor_start = self
            .selection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .filter(|p| p.start_ticks != process.start_ticks)
            .map(|p| BootClock::ticks_to_ns(p.start_ticks));
        state.retired.insert(pid, (process, Instant::now()));
        let mut out = std::mem::take(&mut state.exchanges);
        self.assembler
            .forget_process(pid, BootClock::boot_now(), successor_start, &mut out);
        self.emit(&mut out, state);
        state.exchanges = out;
        state.resource_cache.remove(&pid);
    }

    fn housekeeping(&mut self, state: &mut State) {
        let now = Instant::now();
        state
            .retired
            .retain(|_, (_, since)| now.duration_since(*since) < RETIRED_GRACE);
        if now.duration_since(state.clock_measured) >= CLOCK_REFRESH {
            state.clock = BootClock::measure();
            state.clock_measured = now;
        }
        let mut out = std::mem::take(&mut state.exchanges);
        self.assembler.expire(BootClock::boot_now(), &mut out);
        self.emit(&mut out, state);
        state.exchanges = out;
        self.mirror_stats(state);
        self.flush(state);
    }

    fn mirror_stats(&self, state: &mut State) {
        let now = self.assembler.stats();
        let last = &mut state.stats;
        let t = &self.telemetry;
        follow(
            &t.non_http_connections,
            &mut last.non_http_connections,
            now.non_http_connections,
        );
        follow(
            &t.unparsable_heads,
            &mut last.unparsable_heads,
            now.unparsable_heads,
        );
        follow(
            &t.requests_dropped_pending_overflow,
            &mut last.pending_overflow,
            now.pending_overflow,
        );
        follow(
            &t.connections_evicted,
            &mut last.connections_evicted,
            now.connections_evicted,
        );
        if let Some(red) = &self.red {
            let dropped = red.lock().unwrap_or_else(|p| p.into_inner()).dropped;
            let mut seen = t.red_series_dropped.get();
            follow(&t.red_series_dropped, &mut seen, dropped);
        }
    }
}
