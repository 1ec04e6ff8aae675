//! Spans to ingest as the protobuf bytes they arrived in.
//!
//! The sampler buffers spans encoded (see `trace_buffer`), so a span that
//! arrives encoded can go into the buffer as it is: the `tail_sampling`
//! processor walks the received request in place (collector-core's
//! `protowire`), reads each span's trace ID and parent, and hands the spans
//! over as slices of the received bytes, grouped under their resource and
//! scope. Nothing is decoded or encoded on the way in; a trace is decoded
//! once, when it is decided.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::trace_id::TraceId;

/// An encoded resource (`ResourceSpans` without its scopes) or scope
/// (`ScopeSpans` without its spans), shared by the spans under it.
pub type Block = Arc<[u8]>;

/// One span as it stands in its `ScopeSpans`: the whole `spans` field
/// (tag, length and the encoded `Span`).
#[derive(Clone, Debug)]
pub struct EncodedSpan {
    pub(crate) trace_id: TraceId,
    /// The span has no parent span ID.
    pub(crate) root: bool,
    pub(crate) field: Bytes,
    /// Bytes of tag and length before the span in `field`.
    header_len: usize,
}

impl EncodedSpan {
    /// A span of trace `trace_id` (a root span when `root`) whose
    /// `ScopeSpans.spans` field is `field`, the span starting `header_len`
    /// bytes in. The caller vouches that the span is well-formed protobuf:
    /// one that is not is found when its trace is decided, and the trace is
    /// counted in `sampling_trace_dropped_policy_evaluation_error` and not kept.
    pub fn new(trace_id: &[u8], root: bool, field: Bytes, header_len: usize) -> Self {
        EncodedSpan {
            trace_id: TraceId::from_slice(trace_id),
            root,
            field,
            header_len,
        }
    }

    /// The encoded `Span`.
    pub(crate) fn span_bytes(&self) -> &[u8] {
        self.field.get(self.header_len..).unwrap_or_default()
    }
}

/// Spans under one resource and scope.
#[derive(Clone, Debug)]
pub(crate) struct EncodedGroup {
    pub(crate) resource: Block,
    pub(crate) scope: Block,
    pub(crate) spans: Vec<EncodedSpan>,
}

/// Spans to ingest, grouped by resource and scope in arrival order.
#[derive(Clone, Debug, Default)]
pub struct EncodedSpans {
    pub(crate) groups: Vec<EncodedGroup>,
    spans: usize,
}

impl EncodedSpans {
    /// No spans yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a group: the spans pushed next are under `resource` and `scope`.
    pub fn start_group(&mut self, resource: Block, scope: Block) {
        self.groups.push(EncodedGroup {
            resource,
            scope,
            spans: Vec::new(),
        });
    }

    /// Adds a span to the group started last (starting an empty resource
    /// and scope if none was).
    pub fn push(&mut self, span: EncodedSpan) {
        if self.groups.is_empty() {
            self.start_group(Block::from(&[][..]), Block::from(&[][..]));
        }
        if let Some(group) = self.groups.last_mut() {
            group.spans.push(span);
            self.spans += 1;
        }
    }

    /// Number of spans.
    pub fn span_count(&self) -> usize {
        self.spans
    }

    /// Encodes decoded spans (what [`crate::Sampler::ingest`] takes).
    pub fn from_resource_spans(batch: &[ResourceSpans]) -> Self {
        let mut out = EncodedSpans::new();
        for rs in batch {
            let resource = ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans: Vec::new(),
                schema_url: rs.schema_url.clone(),
            };
            let resource = Block::from(resource.encode_to_vec());
            for ss in &rs.scope_spans {
                if ss.spans.is_empty() {
                    continue;
                }
                let scope = ScopeSpans {
                    scope: ss.scope.clone(),
                    spans: Vec::new(),
                    schema_url: ss.schema_url.clone(),
                };
                out.start_group(resource.clone(), Block::from(scope.encode_to_vec()));
                for span in &ss.spans {
                    let mut field =
                        Vec::with_capacity(prost::encoding::message::encoded_len(2, span));
                    prost::encoding::message::encode(2, span, &mut field);
                    let header_len = field.len() - span.encoded_len();
                    out.push(EncodedSpan::new(
                        &span.trace_id,
                        span.parent_span_id.is_empty(),
                        Bytes::from(field),
                        header_len,
                    ));
                }
            }
        }
        out
    }
}
