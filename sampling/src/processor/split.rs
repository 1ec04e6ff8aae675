//! Splitting a received request by trace ID into one part per shard,
//! keeping each span under its resource and scope, without decoding it; and
//! merging decided traces back into few resources for delivery.

use std::mem;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use collector_core::pdata::protowire::{
    Field, Fields, last_len_fields, len_field_overhead, put_len_field,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::trace_buffer::SpanGroup;
use crate::{Block, EncodedSpan, EncodedSpans};

/// The shard (of `shards`) that owns a trace ID.
///
/// A 64-bit mix of the ID's bytes (splitmix64's finaliser), mapped onto the
/// shards by multiply-shift, so that it is independent of both the
/// `probabilistic` policy's FNV hash and the load-balancing exporter's CRC-32:
/// the traces one gateway receives still spread evenly over its shards.
pub(crate) fn shard_of(trace_id: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    let (a, b) = trace_id.split_at(trace_id.len().min(8));
    lo[..a.len()].copy_from_slice(a);
    let b = &b[..b.len().min(8)];
    hi[..b.len()].copy_from_slice(b);
    let mut z = u64::from_le_bytes(lo) ^ u64::from_le_bytes(hi).rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let index = (u128::from(z) * shards as u128) >> 64;
    usize::try_from(index).unwrap_or(0)
}

/// A request split by shard.
#[derive(Debug)]
pub(crate) struct Split {
    /// The spans of each shard (empty for shards with no span).
    pub(crate) parts: Vec<EncodedSpans>,
    /// Spans per shard.
    pub(crate) spans: Vec<usize>,
}

/// The trace ID and whether the span is a root (no parent span ID) of an
/// encoded span; the last occurrence of a field wins, as in decoding.
fn span_keys(span: &[u8]) -> Option<(&[u8], bool)> {
    last_len_fields(span, [1, 4]).map(|[trace_id, parent]| (trace_id, parent.is_empty()))
}

/// The raw fields of a message other than its repeated field 2 (scopes of
/// a resource, spans of a scope), and the payloads of field 2.
fn header_and_children(message: &[u8]) -> Option<(Vec<u8>, Vec<Field<'_>>)> {
    let mut header = Vec::new();
    let mut children = Vec::new();
    let mut fields = Fields::new(message);
    for field in fields.by_ref() {
        if field.is_len(2) {
            children.push(field);
        } else {
            header.extend_from_slice(field.raw);
        }
    }
    (!fields.failed()).then_some((header, children))
}

/// Splits an encoded `ExportTraceServiceRequest` (its segments concatenate
/// to it) into `shards` parts by trace ID without decoding it: each span
/// goes to its trace's shard as a slice of `segments`, under copies of its
/// resource's and scope's encoded headers, shared by every span and shard
/// under them. Resources and scopes without spans are left out, as are
/// unknown fields of the request (as decoding would). `None` when the bytes
/// hold something the walk does not expect (a group, a truncated field).
pub(crate) fn split_encoded(segments: &[Bytes], shards: usize) -> Option<Split> {
    let shards = shards.max(1);
    let mut parts: Vec<EncodedSpans> = (0..shards).map(|_| EncodedSpans::new()).collect();
    let mut spans = vec![0usize; shards];
    // Whether a shard's part has a group for the scope being walked.
    let mut started = vec![false; shards];
    for segment in segments {
        let mut request = Fields::new(segment);
        for resource_spans in request.by_ref().filter(|f| f.is_len(1)) {
            let (header, scopes) = header_and_children(resource_spans.payload)?;
            let resource = Block::from(header);
            for scope_spans in scopes {
                let (header, fields) = header_and_children(scope_spans.payload)?;
                if fields.is_empty() {
                    continue;
                }
                let scope = Block::from(header);
                started.fill(false);
                for field in fields {
                    let (trace_id, root) = span_keys(field.payload)?;
                    let shard = shard_of(trace_id, shards);
                    if !started[shard] {
                        parts[shard].start_group(resource.clone(), scope.clone());
                        started[shard] = true;
                    }
                    let header_len = field.raw.len() - field.payload.len();
                    parts[shard].push(EncodedSpan::new(
                        trace_id,
                        root,
                        segment.slice_ref(field.raw),
                        header_len,
                    ));
                    spans[shard] += 1;
                }
            }
        }
        if request.failed() {
            return None;
        }
    }
    Some(Split { parts, spans })
}

/// How many distinct resources [`ResourceMerger`] compares a new one with.
const MERGE_WINDOW: usize = 16;

/// Builds one request out of many decided traces, putting the spans of
/// traces from the same resource and scope under one entry (the engine
/// returns each trace with its own copy of them), so that what goes
/// downstream does not repeat a resource per trace.
#[derive(Debug, Default)]
pub(crate) struct ResourceMerger {
    out: Vec<ResourceSpans>,
    spans: usize,
}

impl ResourceMerger {
    /// Adds resources with their spans.
    pub(crate) fn add(&mut self, batch: Vec<ResourceSpans>) {
        for rs in batch {
            self.add_one(rs);
        }
    }

    fn add_one(&mut self, mut rs: ResourceSpans) {
        let start = self.out.len().saturating_sub(MERGE_WINDOW);
        let same = self.out[start..].iter_mut().rev().find(|existing| {
            existing.schema_url == rs.schema_url && existing.resource == rs.resource
        });
        let Some(existing) = same else {
            self.spans += count_spans(&rs);
            self.out.push(rs);
            return;
        };
        for ss in mem::take(&mut rs.scope_spans) {
            self.spans += ss.spans.len();
            let scope = existing
                .scope_spans
                .iter_mut()
                .rev()
                .take(MERGE_WINDOW)
                .find(|e| e.schema_url == ss.schema_url && e.scope == ss.scope);
            match scope {
                Some(scope) => scope.spans.extend(ss.spans),
                None => existing.scope_spans.push(ss),
            }
        }
    }

    /// Spans added so far.
    pub(crate) fn spans(&self) -> usize {
        self.spans
    }

    /// The merged resources, leaving the merger empty.
    pub(crate) fn take(&mut self) -> (Vec<ResourceSpans>, usize) {
        (mem::take(&mut self.out), mem::take(&mut self.spans))
    }
}

/// Builds one encoded request out of the buffered bytes of many decided
/// traces, putting the spans of traces under the same resource and scope
/// under one entry, as [`ResourceMerger`] does for decoded spans, and
/// writing the buffered span bytes as they are.
#[derive(Debug, Default)]
pub(crate) struct EncodedMerger {
    /// Resource headers with their scope headers and spans.
    resources: Vec<(Block, Vec<ScopeEntry>)>,
    spans: usize,
}

/// A scope header and the encoded spans under it.
type ScopeEntry = (Block, Vec<u8>);

/// The same block: the same allocation (traces of one request share it)
/// or the same bytes.
fn same(a: &Block, b: &Block) -> bool {
    Arc::ptr_eq(a, b) || a[..] == b[..]
}

impl EncodedMerger {
    /// Adds a trace's groups holding `spans` spans.
    pub(crate) fn add(&mut self, groups: Vec<SpanGroup>, spans: usize) {
        self.spans += spans;
        for group in groups {
            let start = self.resources.len().saturating_sub(MERGE_WINDOW);
            let existing = self.resources[start..]
                .iter_mut()
                .rev()
                .find(|(resource, _)| same(resource, &group.resource));
            let Some((_, scopes)) = existing else {
                self.resources
                    .push((group.resource, vec![(group.scope, group.spans)]));
                continue;
            };
            let start = scopes.len().saturating_sub(MERGE_WINDOW);
            match scopes[start..]
                .iter_mut()
                .rev()
                .find(|(scope, _)| same(scope, &group.scope))
            {
                Some((_, bytes)) => bytes.extend_from_slice(&group.spans),
                None => scopes.push((group.scope, group.spans)),
            }
        }
    }

    /// Spans added so far.
    pub(crate) fn spans(&self) -> usize {
        self.spans
    }

    /// The merged traces as an encoded `ExportTraceServiceRequest` and its
    /// span count, leaving the merger empty.
    pub(crate) fn take(&mut self) -> (Bytes, usize) {
        let scope_len = |(scope, spans): &ScopeEntry| scope.len() + spans.len();
        let resource_len = |(resource, scopes): &(Block, Vec<ScopeEntry>)| {
            resource.len()
                + scopes
                    .iter()
                    .map(|s| len_field_overhead(scope_len(s)) + scope_len(s))
                    .sum::<usize>()
        };
        let total: usize = self
            .resources
            .iter()
            .map(|r| len_field_overhead(resource_len(r)) + resource_len(r))
            .sum();
        let mut out = BytesMut::with_capacity(total);
        for entry in mem::take(&mut self.resources) {
            put_len_field(&mut out, 1, resource_len(&entry));
            let (resource, scopes) = entry;
            out.put_slice(&resource);
            for scope in scopes {
                put_len_field(&mut out, 2, scope_len(&scope));
                out.put_slice(&scope.0);
                out.put_slice(&scope.1);
            }
        }
        (out.freeze(), mem::take(&mut self.spans))
    }
}

/// Spans under a resource.
pub(crate) fn count_spans(rs: &ResourceSpans) -> usize {
    rs.scope_spans.iter().map(|ss| ss.spans.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
    use prost::Message;

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn span(trace: u64, name: &str) -> Span {
        let mut id = vec![0u8; 16];
        id[8..].copy_from_slice(&trace.to_be_bytes());
        Span {
            trace_id: id,
            span_id: vec![1; 8],
            parent_span_id: vec![2; 8],
            name: name.into(),
            ..Default::default()
        }
    }

    fn scope(name: &str, spans: Vec<Span>) -> ScopeSpans {
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            spans,
            schema_url: "s".into(),
        }
    }

    #[test]
    fn shards_spread_trace_ids_evenly() {
        let mut counts = [0usize; 4];
        for t in 0..40_000u64 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&t.to_be_bytes());
            counts[shard_of(&id, 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(&[7; 16], 1), 0);
        assert!(shard_of(&[], 3) < 3);
        assert!(shard_of(&[1, 2, 3], 3) < 3);
    }

    #[test]
    fn every_span_lands_in_its_traces_shard_under_its_resource_and_scope() {
        let mut root = span(3, "b-3");
        root.parent_span_id = Vec::new();
        let batch = vec![
            ResourceSpans {
                resource: resource("a"),
                scope_spans: vec![
                    scope("s1", (0..20).map(|t| span(t, &format!("a-{t}"))).collect()),
                    scope("empty", Vec::new()),
                ],
                schema_url: "r".into(),
            },
            ResourceSpans {
                resource: resource("b"),
                scope_spans: vec![scope("s2", vec![root])],
                schema_url: String::new(),
            },
        ];
        let encoded = ExportTraceServiceRequest {
            resource_spans: batch,
        }
        .encode_to_vec();
        // Split over two segments, as merged batches arrive.
        let cut = encoded.len() / 2;
        let cut = (1..encoded.len())
            .map(|c| (c + cut) % encoded.len())
            .find(|&c| {
                ExportTraceServiceRequest::decode(&encoded[..c]).is_ok()
                    && ExportTraceServiceRequest::decode(&encoded[c..]).is_ok()
                    && c > 0
            })
            .unwrap_or(encoded.len());
        let segments = [
            Bytes::copy_from_slice(&encoded[..cut]),
            Bytes::copy_from_slice(&encoded[cut..]),
        ];
        let split = split_encoded(&segments, 3).unwrap();
        assert_eq!(split.spans.iter().sum::<usize>(), 21);
        let mut seen = 0;
        for (owner, part) in split.parts.iter().enumerate() {
            assert_eq!(part.span_count(), split.spans[owner]);
            for group in &part.groups {
                let rs = ResourceSpans::decode(&group.resource[..]).unwrap();
                let mut ss = ScopeSpans::decode(&group.scope[..]).unwrap();
                assert!(rs.scope_spans.is_empty() && ss.spans.is_empty());
                let service = match &rs.resource.as_ref().unwrap().attributes[0].value {
                    Some(AnyValue {
                        value: Some(Value::StringValue(s)),
                    }) => s.clone(),
                    other => panic!("{other:?}"),
                };
                for encoded in &group.spans {
                    ss.merge(&encoded.field[..]).unwrap();
                }
                let scope = &ss.scope.as_ref().unwrap().name;
                assert_eq!(ss.spans.len(), group.spans.len());
                for (s, encoded) in ss.spans.iter().zip(&group.spans) {
                    assert_eq!(shard_of(&s.trace_id, 3), owner);
                    assert_eq!(encoded.trace_id, crate::TraceId::from_slice(&s.trace_id));
                    assert_eq!(encoded.root, s.parent_span_id.is_empty());
                    assert!(s.name.starts_with(&service), "{} under {service}", s.name);
                    assert_eq!(scope, if service == "a" { "s1" } else { "s2" });
                    seen += 1;
                }
                if service == "a" {
                    assert_eq!(rs.schema_url, "r");
                }
            }
        }
        assert_eq!(seen, 21);
        // One shard: everything in it.
        let one = split_encoded(&segments, 1).unwrap();
        assert_eq!(one.spans, vec![21]);
        // A group at the top level, a truncated length: not split.
        assert!(split_encoded(&[Bytes::from_static(&[0x0b, 0x0c])], 2).is_none());
        assert!(split_encoded(&[Bytes::from_static(&[0x0a, 0x05, 0x01])], 2).is_none());
    }

    #[test]
    fn merger_groups_traces_of_the_same_resource_and_scope() {
        let trace = |service: &str, scope_name: &str, t: u64| {
            vec![ResourceSpans {
                resource: resource(service),
                scope_spans: vec![scope(scope_name, vec![span(t, "x"), span(t, "y")])],
                schema_url: String::new(),
            }]
        };
        let mut merger = ResourceMerger::default();
        merger.add(trace("a", "s", 1));
        merger.add(trace("b", "s", 2));
        merger.add(trace("a", "s", 3));
        merger.add(trace("a", "t", 4));
        assert_eq!(merger.spans(), 8);
        let (out, spans) = merger.take();
        assert_eq!(spans, 8);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].scope_spans.len(), 2);
        assert_eq!(out[0].scope_spans[0].spans.len(), 4);
        assert_eq!(out[1].scope_spans[0].spans.len(), 2);
        assert_eq!(merger.spans(), 0);
    }
    #[test]
    fn encoded_merger_writes_what_the_resource_merger_builds() {
        let trace = |service: &str, scope_name: &str, t: u64| ResourceSpans {
            resource: resource(service),
            scope_spans: vec![scope(scope_name, vec![span(t, "x"), span(t, "y")])],
            schema_url: String::new(),
        };
        let traces = [
            trace("a", "s", 1),
            trace("b", "s", 2),
            trace("a", "s", 3),
            trace("a", "t", 4),
        ];
        // Each trace as the buffer holds it: blocks of equal bytes, not
        // shared allocations, as traces from different requests.
        let mut encoded = EncodedMerger::default();
        let mut decoded = ResourceMerger::default();
        for rs in &traces {
            let ss = &rs.scope_spans[0];
            let mut spans = Vec::new();
            for sp in &ss.spans {
                prost::encoding::message::encode(2, sp, &mut spans);
            }
            let group = SpanGroup {
                resource: Block::from(
                    ResourceSpans {
                        scope_spans: Vec::new(),
                        ..rs.clone()
                    }
                    .encode_to_vec(),
                ),
                scope: Block::from(
                    ScopeSpans {
                        spans: Vec::new(),
                        ..ss.clone()
                    }
                    .encode_to_vec(),
                ),
                spans,
            };
            encoded.add(vec![group], 2);
            decoded.add(vec![rs.clone()]);
        }
        assert_eq!(encoded.spans(), 8);
        let (bytes, spans) = encoded.take();
        assert_eq!(spans, 8);
        assert_eq!(encoded.spans(), 0);
        // The receiver's scanner accepts it and counts the same spans.
        let batch = collector_core::pdata::Traces::decode(bytes.clone()).unwrap();
        assert_eq!(batch.item_count(), 8);
        let (expected, _) = decoded.take();
        assert_eq!(
            ExportTraceServiceRequest::decode(bytes).unwrap(),
            ExportTraceServiceRequest {
                resource_spans: expected
            }
        );
    }
}
