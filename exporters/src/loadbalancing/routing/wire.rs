//! Splitting spans without decoding them: a batch that still carries its
//! received protobuf bytes is walked field by field, each span's trace ID read
//! in place, and each backend's request assembled from the raw bytes of its
//! spans under copies of their resource and scope fields. Nothing is decoded
//! or encoded but the small resource header when routing by service.
//!
//! The bytes were checked by the receiver's scanner (or written by prost), so
//! they are well-formed; anything this walker does not expect (a group, a
//! truncated field) makes it give up, and the caller takes the decoding path.

use bytes::{BufMut, Bytes, BytesMut};
use collector_core::pdata::LEADING_TRACE_ID;
use collector_core::pdata::protowire::{Fields, last_len_fields, put_len_field, varint_len};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

/// How spans pick their owner.
pub(super) enum Key<'k> {
    /// By each span's trace ID; `leading` when the batch's scan found
    /// every span's trace ID to be its one, first field
    /// (`Batch::trace_ids_lead`), so it is read at a fixed offset.
    TraceId { leading: bool },
    /// By the resource: `resource_key` gets the decoded resource header
    /// (everything but the spans) and returns the routing key's bytes.
    Resource(&'k dyn Fn(&ResourceSpans) -> Vec<u8>),
}

/// The trace ID of a span (its last occurrence, as protobuf decoding does).
fn trace_id(span: &[u8]) -> Option<&[u8]> {
    last_len_fields(span, [1]).map(|[id]| id)
}

/// The trace ID of a span whose one trace ID field is known to come first:
/// the 16 bytes after its key and length, without walking the rest.
fn leading_trace_id(span: &[u8]) -> Option<&[u8]> {
    span.strip_prefix(&LEADING_TRACE_ID)?.get(..16)
}

struct Scope<'a> {
    /// Every field but the spans, raw.
    header: Vec<&'a [u8]>,
    /// Each span's raw field (tag, length, span) and owner.
    spans: Vec<(&'a [u8], usize)>,
}

struct Resource<'a> {
    header: Vec<&'a [u8]>,
    scopes: Vec<Scope<'a>>,
}

fn parse_resource<'a>(
    buf: &'a [u8],
    key: &Key<'_>,
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Option<Resource<'a>> {
    let mut header = Vec::new();
    let mut scope_fields = Vec::new();
    let mut fields = Fields::new(buf);
    for field in fields.by_ref() {
        if field.is_len(2) {
            scope_fields.push(field.payload);
        } else {
            header.push(field.raw);
        }
    }
    if fields.failed() {
        return None;
    }
    let resource_owner = match key {
        Key::TraceId { .. } => None,
        Key::Resource(resource_key) => {
            let mut bytes = Vec::with_capacity(header.iter().map(|h| h.len()).sum());
            for h in &header {
                bytes.extend_from_slice(h);
            }
            let decoded = ResourceSpans::decode(bytes.as_slice()).ok()?;
            Some(owner(&resource_key(&decoded)))
        }
    };
    let mut scopes = Vec::with_capacity(scope_fields.len());
    for scope in scope_fields {
        let mut header = Vec::new();
        let mut spans = Vec::new();
        let mut fields = Fields::new(scope);
        for field in fields.by_ref() {
            if field.is_len(2) {
                let o = match (resource_owner, key) {
                    (Some(o), _) => o,
                    (None, Key::TraceId { leading: true }) => {
                        owner(leading_trace_id(field.payload)?)
                    }
                    (None, _) => owner(trace_id(field.payload)?),
                };
                spans.push((field.raw, o));
            } else {
                header.push(field.raw);
            }
        }
        if fields.failed() {
            return None;
        }
        scopes.push(Scope { header, spans });
    }
    Some(Resource { header, scopes })
}

fn sum(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

/// Writes the part of `resource` that belongs to `owner` as a
/// `resource_spans` field of the request; nothing when it has no span there.
fn write_part(out: &mut BytesMut, resource: &Resource<'_>, owner: usize) {
    let scope_len = |scope: &Scope<'_>| {
        let spans: usize = scope
            .spans
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(raw, _)| raw.len())
            .sum();
        (spans > 0).then(|| sum(&scope.header) + spans)
    };
    let scopes: Vec<(usize, &Scope<'_>)> = resource
        .scopes
        .iter()
        .filter_map(|s| scope_len(s).map(|len| (len, s)))
        .collect();
    if scopes.is_empty() {
        return;
    }
    let body = sum(&resource.header)
        + scopes
            .iter()
            .map(|(len, _)| 1 + varint_len(*len as u64) + len)
            .sum::<usize>();
    put_len_field(out, 1, body);
    for h in &resource.header {
        out.put_slice(h);
    }
    for (len, scope) in scopes {
        put_len_field(out, 2, len);
        for h in &scope.header {
            out.put_slice(h);
        }
        for (raw, o) in &scope.spans {
            if *o == owner {
                out.put_slice(raw);
            }
        }
    }
}

/// What the walk found.
pub(super) enum Split {
    /// Every span has this owner: send the batch as it is.
    Single(usize),
    /// One request per owner, as segments that concatenate to it, with its
    /// number of spans.
    Parts(Vec<(usize, Vec<Bytes>, usize)>),
}

/// A part is written in segments of about this size (each whole
/// `resource_spans` fields, so they concatenate to the request). In one
/// buffer, a part of a large batch is an allocation of megabytes, which
/// the C library's allocator maps fresh and faults in page by page every
/// time (measured: 20 ns per span with gzip); buffers this size come back
/// from its free lists.
const SEGMENT_BYTES: usize = 64 * 1024;

/// Splits the encoded `ExportTraceServiceRequest` segments by owner;
/// `None` when the bytes hold something unexpected.
pub(super) fn split_traces(
    segments: &[Bytes],
    key: &Key<'_>,
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Option<Split> {
    let mut resources = Vec::new();
    for segment in segments {
        let mut fields = Fields::new(segment);
        for field in fields.by_ref() {
            // Unknown request fields are dropped, as decoding would.
            if field.is_len(1) {
                resources.push(parse_resource(field.payload, key, owner)?);
            }
        }
        if fields.failed() {
            return None;
        }
    }
    // Spans per owner, by owner.
    let mut owners: Vec<(usize, usize)> = Vec::new();
    for (_, o) in resources
        .iter()
        .flat_map(|r| &r.scopes)
        .flat_map(|s| &s.spans)
    {
        match owners.iter_mut().find(|(owner, _)| owner == o) {
            Some((_, n)) => *n += 1,
            None => owners.push((*o, 1)),
        }
    }
    owners.sort_unstable();
    if owners.len() <= 1 {
        return Some(Split::Single(owners.first().map_or(0, |(o, _)| *o)));
    }
    let parts = owners
        .into_iter()
        .map(|(owner, spans)| {
            let mut part = Vec::new();
            let mut out = BytesMut::with_capacity(SEGMENT_BYTES);
            for resource in &resources {
                write_part(&mut out, resource, owner);
                if out.len() >= SEGMENT_BYTES * 3 / 4 {
                    part.push(out.freeze());
                    out = BytesMut::with_capacity(SEGMENT_BYTES);
                }
            }
            if !out.is_empty() {
                part.push(out.freeze());
            }
            (owner, part, spans)
        })
        .collect();
    Some(Split::Parts(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as OtelResource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn request() -> ExportTraceServiceRequest {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: (0..3)
                .map(|r| ResourceSpans {
                    resource: Some(OtelResource {
                        attributes: vec![kv("service.name", &format!("svc-{r}"))],
                        ..Default::default()
                    }),
                    scope_spans: (0..2)
                        .map(|s| ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: format!("scope-{s}"),
                                ..Default::default()
                            }),
                            spans: (0..20u8)
                                .map(|i| Span {
                                    trace_id: vec![i % 7; 16],
                                    span_id: vec![r, s, i, 1, 1, 1, 1, 1],
                                    name: format!("span-{r}-{s}-{i}"),
                                    ..Default::default()
                                })
                                .collect(),
                            schema_url: "https://schema/1".into(),
                        })
                        .collect(),
                    schema_url: "https://schema/0".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn parts_hold_each_span_once_under_its_resource_and_scope() {
        let original = request();
        let bytes = Bytes::from(original.encode_to_vec());
        // Owner: the first trace-ID byte modulo 3.
        let mut owner = |id: &[u8]| usize::from(id.first().copied().unwrap_or(0)) % 3;
        let Some(Split::Parts(parts)) = split_traces(
            &[bytes.clone(), bytes],
            &Key::TraceId { leading: false },
            &mut owner,
        ) else {
            panic!("expected parts")
        };
        assert_eq!(parts.len(), 3);
        let mut seen = 0;
        for (o, segments, spans) in parts {
            let part = Bytes::from(segments.concat());
            // Each part is what the receiver's scanner accepts, with the
            // span count the split reports (it is not scanned again).
            let scanned = collector_core::pdata::Traces::decode(part.clone()).unwrap();
            assert_eq!(scanned.item_count(), spans);
            let decoded = ExportTraceServiceRequest::decode(part).unwrap();
            for (r, rs) in decoded.resource_spans.iter().enumerate() {
                assert_eq!(rs.schema_url, "https://schema/0");
                let _ = r;
                for ss in &rs.scope_spans {
                    assert_eq!(ss.schema_url, "https://schema/1");
                    for span in &ss.spans {
                        seen += 1;
                        assert_eq!(usize::from(span.trace_id[0]) % 3, o);
                        // The span sits under its own resource and scope.
                        let name = format!(
                            "span-{}-{}-",
                            &rs.resource.as_ref().unwrap().attributes[0]
                                .value
                                .as_ref()
                                .and_then(|v| match &v.value {
                                    Some(any_value::Value::StringValue(s)) => {
                                        s.strip_prefix("svc-").map(str::to_string)
                                    }
                                    _ => None,
                                })
                                .unwrap(),
                            ss.scope
                                .as_ref()
                                .unwrap()
                                .name
                                .strip_prefix("scope-")
                                .unwrap()
                        );
                        assert!(span.name.starts_with(&name), "{} under {name}", span.name);
                    }
                }
            }
        }
        assert_eq!(seen, 2 * 3 * 2 * 20);
    }

    #[test]
    fn large_parts_come_in_segments_of_whole_resources() {
        let bytes = Bytes::from(request().encode_to_vec());
        let batch = vec![bytes; 300];
        let mut owner = |id: &[u8]| usize::from(id[0]) % 3;
        let Some(Split::Parts(parts)) =
            split_traces(&batch, &Key::TraceId { leading: false }, &mut owner)
        else {
            panic!("expected parts")
        };
        let mut total = 0;
        for (_, segments, spans) in parts {
            assert!(
                segments.len() > 1,
                "{} bytes in one segment",
                segments[0].len()
            );
            let mut counted = 0;
            for segment in &segments {
                // The test's resources are far smaller than the quarter of
                // a segment left when one is closed.
                assert!(segment.len() <= SEGMENT_BYTES, "{}", segment.len());
                // Each segment is a request of its own (whole resources).
                counted += collector_core::pdata::Traces::decode(segment.clone())
                    .expect("a request")
                    .item_count();
            }
            assert_eq!(counted, spans);
            total += spans;
        }
        assert_eq!(total, 300 * 3 * 2 * 20);
    }

    #[test]
    fn trace_ids_read_at_their_leading_offset_split_the_same() {
        let bytes = Bytes::from(request().encode_to_vec());
        let split = |leading: bool| {
            let mut owner = |id: &[u8]| usize::from(id[0]) % 3 + usize::from(id[15]);
            match split_traces(
                std::slice::from_ref(&bytes),
                &Key::TraceId { leading },
                &mut owner,
            ) {
                Some(Split::Parts(parts)) => parts,
                _ => panic!("expected parts"),
            }
        };
        assert_eq!(split(true), split(false));
        // A span without its trace ID first gives up on the fast path
        // rather than misroute (the scan would not have said `leading`).
        let odd = Bytes::from_static(&[0x0a, 6, 0x12, 4, 0x12, 2, 0x12, 0]);
        let mut owner = |_: &[u8]| 0;
        assert!(split_traces(&[odd], &Key::TraceId { leading: true }, &mut owner).is_none());
    }

    #[test]
    fn one_owner_keeps_the_batch_and_resource_keys_read_the_header() {
        let bytes = Bytes::from(request().encode_to_vec());
        let mut owner = |_: &[u8]| 2;
        assert!(matches!(
            split_traces(
                std::slice::from_ref(&bytes),
                &Key::TraceId { leading: false },
                &mut owner
            ),
            Some(Split::Single(2))
        ));
        let service = |rs: &ResourceSpans| {
            rs.resource
                .as_ref()
                .map(|r| format!("{:?}", r.attributes))
                .unwrap_or_default()
                .into_bytes()
        };
        let mut by_service = |key: &[u8]| key.len() % 2;
        let split = split_traces(&[bytes], &Key::Resource(&service), &mut by_service);
        assert!(split.is_some());
    }

    #[test]
    fn unexpected_bytes_give_up() {
        let mut owner = |_: &[u8]| 0;
        // A group field at the top level.
        let bytes = Bytes::from_static(&[0x0b, 0x0c]);
        assert!(split_traces(&[bytes], &Key::TraceId { leading: false }, &mut owner).is_none());
        // A truncated length.
        let bytes = Bytes::from_static(&[0x0a, 0x05, 0x01]);
        assert!(split_traces(&[bytes], &Key::TraceId { leading: false }, &mut owner).is_none());
    }
}
