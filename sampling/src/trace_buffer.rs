//! Undecided traces, stored compactly, with the queues that say when each
//! one is due.
//!
//! # Memory layout
//!
//! A decoded prost `Span` takes several times its OTLP size (a 200-byte
//! struct, a `String` and a `Vec` per attribute, an `AnyValue` per value, each
//! a separate allocation), so buffered spans are kept **encoded**: every
//! trace holds, per (resource, scope) pair, one `Vec<u8>` with its spans
//! back to back as `ScopeSpans.spans` records (field 2, length-delimited),
//! copied from the received request as they are (see `encoded`). The
//! resource and the scope are copied once per request into shared
//! `Arc<[u8]>` blocks (a `ResourceSpans` without its scopes, a `ScopeSpans`
//! without its spans), so the ten traces of a 100-span request share one
//! copy. A kept trace goes downstream as these bytes too.
//! There is no per-span allocation: a buffered span costs its encoded bytes
//! plus at most 25% of buffer growth slack; a trace costs about 200 bytes of
//! bookkeeping. Policies need attributes, status, times and tracestate, so a
//! trace is decoded once, when it is decided; that is the only decoding a
//! span meets in the gateway.
//!
//! Measured by `tests/memory.rs` (50,000 traces of 10 spans, 100 spans per
//! request, spans shaped like `loadgen`'s with 4 attributes of 16 bytes):
//! 262 bytes of RSS growth per buffered span of 190 encoded bytes, 1.38x;
//! the test asserts at most 2x. The bytes accounted against
//! `max_memory_mib` (247 per span there) track the real cost closely.
//!
//! # Due times
//!
//! A trace is due `decision_wait` after its first span and, optionally,
//! `decision_wait_after_root_received` after its root span. Both waits are
//! constant and time only moves forward, so each kind of due time is
//! appended in increasing order to a FIFO queue: finding the due traces is
//! O(due), with no scan of the buffer. Entries of traces already decided are
//! skipped lazily (each trace instance has a sequence number).

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::clock::Timestamp;
use crate::engine::DecisionTrigger;
use crate::trace_id::TraceId;

pub(crate) use crate::encoded::Block;

/// The spans of one trace under one resource and scope.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpanGroup {
    pub(crate) resource: Block,
    pub(crate) scope: Block,
    /// Spans encoded as `ScopeSpans` field 2 records.
    pub(crate) spans: Vec<u8>,
}

impl SpanGroup {
    fn is_for(&self, resource: &Block, scope: &Block) -> bool {
        (Arc::ptr_eq(&self.resource, resource) || self.resource[..] == resource[..])
            && (Arc::ptr_eq(&self.scope, scope) || self.scope[..] == scope[..])
    }
}

/// One undecided trace.
#[derive(Debug)]
pub(crate) struct BufferedTrace {
    seq: u64,
    /// Arrival of the first span.
    pub(crate) first_seen: Timestamp,
    pub(crate) span_count: u64,
    /// OTLP-encoded size of the trace (resources, scopes and spans).
    pub(crate) encoded_size: u64,
    /// Bytes accounted to this trace against `max_memory_mib`.
    memory: u64,
    root_scheduled: bool,
    groups: Vec<SpanGroup>,
}

/// Bookkeeping bytes per trace: map slot with its key, queue entry, and a
/// share of the map's spare capacity.
const TRACE_OVERHEAD: u64 =
    (size_of::<TraceId>() + size_of::<BufferedTrace>() + 2 * size_of::<Due>() + 16) as u64;
/// Bookkeeping bytes per span group (allocator headers included).
const GROUP_OVERHEAD: u64 = (size_of::<SpanGroup>() + 16) as u64;
/// Protobuf framing of a resource and a scope (tags and lengths), counted in
/// the encoded size.
const GROUP_FRAMING: u64 = 12;

impl BufferedTrace {
    /// The trace's spans, encoded, by resource and scope.
    pub(crate) fn into_groups(self) -> Vec<SpanGroup> {
        self.groups
    }

    /// The trace as `ResourceSpans`: one per distinct resource, one
    /// `ScopeSpans` per distinct scope, spans in arrival order.
    pub(crate) fn materialize(&self) -> Result<Vec<ResourceSpans>, prost::DecodeError> {
        let mut out: Vec<ResourceSpans> = Vec::new();
        let mut keys: Vec<&Block> = Vec::new();
        for group in &self.groups {
            let mut scope_spans = ScopeSpans::decode(&group.scope[..])?;
            scope_spans.merge(&group.spans[..])?;
            let existing = keys
                .iter()
                .position(|r| Arc::ptr_eq(r, &group.resource) || r[..] == group.resource[..]);
            match existing {
                Some(i) => out[i].scope_spans.push(scope_spans),
                None => {
                    let mut rs = ResourceSpans::decode(&group.resource[..])?;
                    rs.scope_spans.push(scope_spans);
                    out.push(rs);
                    keys.push(&group.resource);
                }
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug)]
struct Due {
    at: Timestamp,
    id: TraceId,
    seq: u64,
}

/// What [`TraceBuffer::append`] did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended {
    /// The span started a new trace.
    pub(crate) new_trace: bool,
    /// The trace's encoded size after the append.
    pub(crate) encoded_size: u64,
}

/// The undecided traces.
#[derive(Debug)]
pub(crate) struct TraceBuffer {
    traces: HashMap<TraceId, BufferedTrace>,
    by_first_span: VecDeque<Due>,
    by_root_span: VecDeque<Due>,
    next_seq: u64,
    memory: u64,
    spans: u64,
    decision_wait: Duration,
    root_wait: Option<Duration>,
}

impl TraceBuffer {
    pub(crate) fn new(
        decision_wait: Duration,
        root_wait: Option<Duration>,
        capacity: usize,
    ) -> Self {
        TraceBuffer {
            traces: HashMap::with_capacity(capacity),
            by_first_span: VecDeque::with_capacity(capacity),
            by_root_span: VecDeque::new(),
            next_seq: 0,
            memory: 0,
            spans: 0,
            decision_wait,
            root_wait,
        }
    }

    /// Number of buffered traces.
    pub(crate) fn len(&self) -> usize {
        self.traces.len()
    }

    pub(crate) fn contains(&self, id: &TraceId) -> bool {
        self.traces.contains_key(id)
    }

    /// Bytes accounted to buffered traces.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.memory
    }

    /// Buffered spans.
    pub(crate) fn span_count(&self) -> u64 {
        self.spans
    }

    /// Buffers a span of trace `id`, `field` being its encoded
    /// `ScopeSpans.spans` field (tag, length, span), under `resource` and
    /// `scope`, starting the trace if it is new. `root`: the span has no parent.
    pub(crate) fn append(
        &mut self,
        id: TraceId,
        root: bool,
        field: &[u8],
        resource: &Block,
        scope: &Block,
        now: Timestamp,
    ) -> Appended {
        let mut new_trace = false;
        let trace = self.traces.entry(id).or_insert_with(|| {
            new_trace = true;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_first_span.push_back(Due {
                at: now + self.decision_wait,
                id,
                seq,
            });
            self.memory += TRACE_OVERHEAD;
            BufferedTrace {
                seq,
                first_seen: now,
                span_count: 0,
                encoded_size: 0,
                memory: TRACE_OVERHEAD,
                root_scheduled: false,
                groups: Vec::new(),
            }
        });

        let group_index = match trace.groups.iter().rposition(|g| g.is_for(resource, scope)) {
            Some(i) => i,
            None => {
                trace.groups.push(SpanGroup {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    spans: Vec::new(),
                });
                let added = GROUP_OVERHEAD + (resource.len() + scope.len()) as u64;
                trace.memory += added;
                self.memory += added;
                trace.encoded_size += (resource.len() + scope.len()) as u64 + GROUP_FRAMING;
                trace.groups.len() - 1
            }
        };
        let buf = &mut trace.groups[group_index].spans;
        let needed = field.len();
        let before = buf.capacity();
        if before - buf.len() < needed {
            // Grow by at least a quarter: amortised copying, bounded slack.
            buf.reserve_exact(needed.max(buf.len() / 4));
        }
        buf.extend_from_slice(field);
        let grown = (buf.capacity() - before) as u64;
        trace.memory += grown;
        self.memory += grown;
        trace.span_count += 1;
        trace.encoded_size += needed as u64;
        self.spans += 1;

        if root
            && !trace.root_scheduled
            && let Some(wait) = self.root_wait
        {
            trace.root_scheduled = true;
            let at = now + wait;
            if at < trace.first_seen + self.decision_wait {
                self.by_root_span.push_back(Due {
                    at,
                    id,
                    seq: trace.seq,
                });
            }
        }
        Appended {
            new_trace,
            encoded_size: trace.encoded_size,
        }
    }

    /// Removes a trace from the buffer.
    pub(crate) fn take(&mut self, id: &TraceId) -> Option<BufferedTrace> {
        let trace = self.traces.remove(id)?;
        self.memory -= trace.memory;
        self.spans -= trace.span_count;
        Some(trace)
    }

    fn is_live(&self, due: &Due) -> bool {
        self.traces.get(&due.id).is_some_and(|t| t.seq == due.seq)
    }

    fn drop_stale_fronts(&mut self) {
        while let Some(front) = self.by_first_span.front() {
            if self.is_live(front) {
                break;
            }
            self.by_first_span.pop_front();
        }
        while let Some(front) = self.by_root_span.front() {
            if self.is_live(front) {
                break;
            }
            self.by_root_span.pop_front();
        }
    }

    /// The next trace due at or before `now`: its ID, when it was due and
    /// why. Earliest due first; the caller takes it out of the buffer.
    pub(crate) fn pop_due(
        &mut self,
        now: Timestamp,
    ) -> Option<(TraceId, Timestamp, DecisionTrigger)> {
        self.drop_stale_fronts();
        let first = self.by_first_span.front().map(|d| d.at);
        let root = self.by_root_span.front().map(|d| d.at);
        let use_root = match (first, root) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(f), Some(r)) => r < f,
        };
        let (queue, trigger) = if use_root {
            (&mut self.by_root_span, DecisionTrigger::RootSpanReceived)
        } else {
            (&mut self.by_first_span, DecisionTrigger::DecisionWait)
        };
        let due = *queue.front()?;
        if due.at > now {
            return None;
        }
        queue.pop_front();
        Some((due.id, due.at, trigger))
    }

    /// The trace that arrived first.
    pub(crate) fn oldest(&mut self) -> Option<TraceId> {
        self.drop_stale_fronts();
        self.by_first_span.front().map(|d| d.id)
    }

    /// No trace is due before this time (it may be that none is due then).
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        let first = self.by_first_span.front().map(|d| d.at);
        let root = self.by_root_span.front().map(|d| d.at);
        match (first, root) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes every trace, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<(TraceId, BufferedTrace)> {
        let mut out = Vec::with_capacity(self.traces.len());
        while let Some(due) = self.by_first_span.pop_front() {
            if self.is_live(&due)
                && let Some(trace) = self.take(&due.id)
            {
                out.push((due.id, trace));
            }
        }
        self.by_root_span.clear();
        // Every trace has a first-span entry; this is only a safety net.
        let rest: Vec<TraceId> = self.traces.keys().copied().collect();
        for id in rest {
            if let Some(trace) = self.take(&id) {
                out.push((id, trace));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testutil::{rs, s, span};
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn block(msg: &impl Message) -> Block {
        Arc::from(msg.encode_to_vec())
    }

    /// Buffers a decoded span, encoded as the processor hands spans over.
    fn add(
        buf: &mut TraceBuffer,
        id: TraceId,
        span: &Span,
        resource: &Block,
        scope: &Block,
        now: Timestamp,
    ) -> Appended {
        let mut field = Vec::new();
        prost::encoding::message::encode(2, span, &mut field);
        buf.append(
            id,
            span.parent_span_id.is_empty(),
            &field,
            resource,
            scope,
            now,
        )
    }

    fn header(r: &ResourceSpans) -> Block {
        let mut r = r.clone();
        r.scope_spans.clear();
        block(&r)
    }

    fn scope(name: &str) -> Block {
        block(&ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            schema_url: format!("https://schema/{name}"),
            ..Default::default()
        })
    }

    #[test]
    fn regroups_by_resource_and_scope() {
        let mut buf = TraceBuffer::new(Duration::from_secs(10), None, 0);
        let id = TraceId([1; 16]);
        let r1 = header(&rs(vec![s("service.name", "a")], vec![]));
        let r1_again = header(&rs(vec![s("service.name", "a")], vec![]));
        let r2 = header(&rs(vec![s("service.name", "b")], vec![]));
        let (sa, sb) = (scope("x"), scope("y"));
        let t = Timestamp::from_secs(1);
        let mk = |n: &str| span(vec![s("n", n)]);
        assert!(add(&mut buf, id, &mk("1"), &r1, &sa, t).new_trace);
        assert!(!add(&mut buf, id, &mk("2"), &r2, &sa, t).new_trace);
        add(&mut buf, id, &mk("3"), &r1_again, &sb, t); // same resource content
        add(&mut buf, id, &mk("4"), &r1_again, &sa, t); // joins group 1
        let trace = buf.take(&id).unwrap();
        assert_eq!(trace.span_count, 4);
        let out = trace.materialize().unwrap();
        let names = |rs: &ResourceSpans| -> Vec<Vec<String>> {
            rs.scope_spans
                .iter()
                .map(|ss| {
                    ss.spans
                        .iter()
                        .map(|sp| match &sp.attributes[0].value.as_ref().unwrap().value {
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) => v.clone(),
                            _ => String::new(),
                        })
                        .collect()
                })
                .collect()
        };
        assert_eq!(out.len(), 2);
        assert_eq!(names(&out[0]), vec![vec!["1", "4"], vec!["3"]]);
        assert_eq!(names(&out[1]), vec![vec!["2"]]);
        assert_eq!(out[0].scope_spans[1].scope.as_ref().unwrap().name, "y");
        assert_eq!(out[0].scope_spans[1].schema_url, "https://schema/y");
        assert_eq!(buf.memory_bytes(), 0);
        assert_eq!(buf.span_count(), 0);
    }

    #[test]
    fn due_order_and_stale_entries() {
        let mut buf = TraceBuffer::new(Duration::from_secs(10), Some(Duration::from_secs(2)), 0);
        let r = header(&rs(vec![], vec![]));
        let sc = scope("s");
        let (a, b, c) = (TraceId([1; 16]), TraceId([2; 16]), TraceId([3; 16]));
        let child = |mut sp: Span| {
            sp.parent_span_id = vec![9; 8];
            sp
        };
        add(
            &mut buf,
            a,
            &child(span(vec![])),
            &r,
            &sc,
            Timestamp::from_secs(0),
        );
        add(
            &mut buf,
            b,
            &child(span(vec![])),
            &r,
            &sc,
            Timestamp::from_secs(1),
        );
        add(
            &mut buf,
            c,
            &child(span(vec![])),
            &r,
            &sc,
            Timestamp::from_secs(2),
        );
        // b's root arrives at 3: due at 5, before its decision_wait (11).
        add(&mut buf, b, &span(vec![]), &r, &sc, Timestamp::from_secs(3));
        assert_eq!(buf.next_due(), Some(Timestamp::from_secs(5)));
        assert_eq!(buf.pop_due(Timestamp::from_secs(4)), None);
        assert_eq!(
            buf.pop_due(Timestamp::from_secs(5)),
            Some((
                b,
                Timestamp::from_secs(5),
                DecisionTrigger::RootSpanReceived
            ))
        );
        buf.take(&b);
        assert_eq!(buf.oldest(), Some(a));
        assert_eq!(
            buf.pop_due(Timestamp::from_secs(12)),
            Some((a, Timestamp::from_secs(10), DecisionTrigger::DecisionWait))
        );
        buf.take(&a);
        // b's first-span entry is stale and skipped
        assert_eq!(
            buf.pop_due(Timestamp::from_secs(12)),
            Some((c, Timestamp::from_secs(12), DecisionTrigger::DecisionWait))
        );
        buf.take(&c);
        assert_eq!(buf.pop_due(Timestamp::from_secs(100)), None);
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn growth_slack_is_bounded() {
        let mut buf = TraceBuffer::new(Duration::from_secs(10), None, 0);
        let r = header(&rs(vec![], vec![]));
        let sc = scope("s");
        let id = TraceId([5; 16]);
        let sp = span(vec![s("k", &"v".repeat(300))]);
        for _ in 0..1000 {
            add(&mut buf, id, &sp, &r, &sc, Timestamp::ZERO);
        }
        let trace = buf.take(&id).unwrap();
        let used: usize = trace.groups.iter().map(|g| g.spans.len()).sum();
        let cap: usize = trace.groups.iter().map(|g| g.spans.capacity()).sum();
        assert!(cap * 4 <= used * 5, "capacity {cap} for {used} bytes");
    }
}
