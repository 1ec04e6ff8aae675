//! One shard: a task that owns a [`Sampler`] for the traces whose IDs hash to
//! it, fed through a bounded queue, deciding traces when they are due and
//! putting the sampled ones into its output queue, never waiting for the
//! next stage.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::{ShardGauges, StatsExport};
use super::output::Output;
use super::shared::Shared;
use super::split::{EncodedMerger, ResourceMerger, count_spans};
use crate::{DecidedTrace, EncodedSpans, Sampler, Timestamp};

/// Most spans handed to the next stage in one request.
pub(crate) const MAX_REQUEST_SPANS: usize = 8192;

/// A part of a request for one shard.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) encoded: EncodedSpans,
    pub(crate) spans: usize,
    pub(crate) bytes: usize,
}

/// The engine's time on tokio's clock (so tests can pause it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    fn at(&self, instant: Instant) -> Timestamp {
        let since = instant.saturating_duration_since(self.origin);
        Timestamp::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Timestamp) -> Instant {
        self.origin + Duration::from_nanos(at.as_nanos())
    }
}

/// Spans and encoded bytes waiting in a shard's queue, against its bound.
#[derive(Debug)]
pub(crate) struct QueueBudget {
    max_bytes: usize,
    used: Mutex<(usize, usize)>,
}

impl QueueBudget {
    pub(crate) fn new(max_bytes: usize) -> Self {
        QueueBudget {
            max_bytes,
            used: Mutex::new((0, 0)),
        }
    }

    /// Reserves room; an empty queue takes any one part, so that a part
    /// larger than the bound is not refused forever.
    pub(crate) fn try_reserve(&self, spans: usize, bytes: usize) -> bool {
        let mut used = self.used.lock();
        let fits = used.0 == 0 || used.1.saturating_add(bytes) <= self.max_bytes;
        if fits {
            used.0 += spans;
            used.1 += bytes;
        }
        fits
    }

    pub(crate) fn release(&self, spans: usize, bytes: usize) {
        let mut used = self.used.lock();
        used.0 = used.0.saturating_sub(spans);
        used.1 = used.1.saturating_sub(bytes);
    }

    /// Spans and bytes queued.
    pub(crate) fn used(&self) -> (usize, usize) {
        *self.used.lock()
    }

    /// Forgets everything queued; the spans it held.
    pub(crate) fn clear(&self) -> usize {
        std::mem::take(&mut *self.used.lock()).0
    }
}

/// What woke the shard up.
enum Event {
    Due,
    Input(Option<Input>),
}

/// A shard's task state.
#[derive(Debug)]
pub(crate) struct Shard {
    sampler: Sampler,
    input: mpsc::Receiver<Input>,
    queue: Arc<QueueBudget>,
    output: Arc<Output>,
    gauges: Arc<ShardGauges>,
    shared: Arc<Shared>,
    clock: Clock,
    export: StatsExport,
    merger: ResourceMerger,
    encoded_merger: EncodedMerger,
}

impl Shard {
    pub(crate) fn new(
        sampler: Sampler,
        input: mpsc::Receiver<Input>,
        queue: Arc<QueueBudget>,
        output: Arc<Output>,
        gauges: Arc<ShardGauges>,
        shared: Arc<Shared>,
        clock: Clock,
    ) -> Self {
        let export = StatsExport::new(sampler.stats().policies.len());
        Shard {
            sampler,
            input,
            queue,
            output,
            gauges,
            shared,
            clock,
            export,
            merger: ResourceMerger::default(),
            encoded_merger: EncodedMerger::default(),
        }
    }

    /// Runs until the processor closes the queue, then decides (or, with
    /// `drop_pending_traces_on_shutdown`, drops) what is still buffered,
    /// queues the sampled spans and closes its output queue.
    ///
    /// The loop waits for the earlier of the next input and the moment the
    /// first buffered trace is due, and checks the timer first, so that a
    /// queue that never empties cannot hold decisions back: at most one
    /// input is taken in between two checks. Nothing in it waits for the
    /// next stage: sampled spans go to the output queue, which the shard's
    /// delivery task drains.
    pub(crate) async fn run(mut self) {
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Timestamp> = None;
        loop {
            let next = self.sampler.next_deadline();
            if next != armed {
                if let Some(at) = next {
                    sleep.as_mut().reset(self.clock.instant(at));
                }
                armed = next;
            }
            let event = tokio::select! {
                biased;
                () = &mut sleep, if armed.is_some() => Event::Due,
                input = self.input.recv() => Event::Input(input),
            };
            match event {
                Event::Due => {
                    armed = None;
                    let decided = self.sampler.tick(self.clock.now());
                    self.emit(Vec::new(), decided);
                }
                Event::Input(Some(input)) => {
                    self.queue.release(input.spans, input.bytes);
                    let outcome = self.sampler.ingest_encoded(input.encoded, self.clock.now());
                    self.emit(outcome.forward, outcome.decided);
                }
                Event::Input(None) => break,
            }
            self.export
                .export(self.sampler.stats(), &self.shared.metrics);
        }
        let decided = self.sampler.flush_all(self.clock.now());
        self.emit(Vec::new(), decided);
        self.export
            .export(self.sampler.stats(), &self.shared.metrics);
        self.gauges.clear();
        self.output.close();
    }

    /// Queues late spans to forward and the sampled traces among `decided`
    /// for delivery, several traces per request, whole traces per request as
    /// far as [`MAX_REQUEST_SPANS`] allows.
    fn emit(&mut self, forward: Vec<ResourceSpans>, decided: Vec<DecidedTrace>) {
        self.merger.add(forward);
        for trace in decided {
            if !trace.sampled {
                continue;
            }
            let spans: usize = trace.resource_spans.iter().map(count_spans).sum();
            if self.merged_spans() > 0 && self.merged_spans() + spans > MAX_REQUEST_SPANS {
                self.queue_merged();
            }
            match trace.encoded {
                Some(groups) => self.encoded_merger.add(groups, spans),
                None => self.merger.add(trace.resource_spans),
            }
        }
        self.queue_merged();
        self.publish();
    }

    /// Spans both mergers hold.
    fn merged_spans(&self) -> usize {
        self.merger.spans() + self.encoded_merger.spans()
    }

    /// Queues what the mergers hold for delivery: the buffered bytes of
    /// traces as they came, and an encoding of the decoded spans (late
    /// spans, spans with `tailsampling.policy` recorded).
    fn queue_merged(&mut self) {
        let (encoded, spans) = self.encoded_merger.take();
        if spans > 0 {
            self.output.push(encoded, spans);
        }
        let (resource_spans, spans) = self.merger.take();
        if spans == 0 {
            return;
        }
        let encoded = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
        self.output.push(Bytes::from(encoded), spans);
    }

    /// Updates the gauges.
    fn publish(&self) {
        let g = &self.gauges;
        g.traces
            .store(self.sampler.pending_traces() as u64, Ordering::Relaxed);
        g.bytes
            .store(self.sampler.buffered_bytes(), Ordering::Relaxed);
        g.held_spans
            .store(self.sampler.buffered_spans(), Ordering::Relaxed);
    }
}
