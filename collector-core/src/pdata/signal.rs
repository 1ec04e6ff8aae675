//! The generic batch type shared by the three signals.

use super::wire;
use bytes::Bytes;
use prost::Message;
use std::sync::OnceLock;

/// What a signal's export request must provide for batching, splitting and
/// validation. Implemented for the three OTLP export requests.
pub trait SignalRequest: Message + Default + Clone + PartialEq + Sized + 'static {
    /// The per-resource element (`ResourceSpans`, `ResourceMetrics`, `ResourceLogs`).
    type Resource: Message + Clone + Default;

    /// The resource elements of the request.
    fn resources(&self) -> &Vec<Self::Resource>;
    /// The resource elements of the request, mutably.
    fn resources_mut(&mut self) -> &mut Vec<Self::Resource>;
    /// Wraps resource elements into a request.
    fn from_resources(resources: Vec<Self::Resource>) -> Self;
    /// Items (spans, data points, log records) under one resource element.
    fn count_items(resource: &Self::Resource) -> usize;
    /// Moves the first `n` items (`0 < n < count_items(resource)`) of `resource`
    /// into a new element that carries the same resource and scopes.
    fn split_items(resource: &mut Self::Resource, n: usize) -> Self::Resource;
    /// The resource of one element, which may be absent on the wire.
    fn resource_mut(
        element: &mut Self::Resource,
    ) -> &mut Option<opentelemetry_proto::tonic::resource::v1::Resource>;
    /// The signal this request carries.
    const SIGNAL: super::Signal;
}

/// Why bytes could not be turned into a batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The protobuf encoding is invalid (truncated, wrong wire types, invalid UTF-8,
    /// nesting deeper than prost's recursion limit).
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The protobuf encoding is invalid (found by the wire scanner, which
    /// accepts exactly what prost accepts).
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The OTLP/JSON encoding is invalid.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] super::json::JsonError),
}

fn schema_of(signal: super::Signal) -> &'static wire::Schema {
    match signal {
        super::Signal::Traces => &wire::TRACES_REQUEST,
        super::Signal::Metrics => &wire::METRICS_REQUEST,
        super::Signal::Logs => &wire::LOGS_REQUEST,
    }
}

/// One OTLP export request of a signal and its item count.
///
/// A batch made from received protobuf bytes keeps just those bytes (checked
/// by [`wire`], which allocates nothing) and decodes them only when something
/// reads or changes the data. A pass-through pipeline therefore never builds
/// the prost structures: the exporter sends the received bytes, and a queued
/// batch costs its encoded size in memory, not several times that.
#[derive(Clone, Debug)]
pub struct Batch<R: SignalRequest> {
    items: usize,
    /// The protobuf encoding while it is known to be exact: the received
    /// requests' bytes, one segment per merged request. Protobuf messages
    /// concatenate, so the segments in order encode the whole request, and
    /// merging stays O(1) per request instead of copying.
    encoded: Option<Vec<Bytes>>,
    /// The decoded request: set from the start when there is no encoding,
    /// else filled on first read.
    decoded: OnceLock<R>,
    /// The scanner found every span/log ID well-formed, so the receiver's
    /// invalid-ID pass can be skipped without decoding.
    ids_checked: bool,
    /// See [`Batch::trace_ids_lead`].
    trace_ids_lead: bool,
}

impl<R: SignalRequest> PartialEq for Batch<R> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items && self.request() == other.request()
    }
}

impl<R: SignalRequest> Default for Batch<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

/// Decodes concatenated segments into one request. The segments passed the
/// scanner, which accepts exactly what prost accepts, so this cannot fail in
/// practice; if it ever did, the loss is logged rather than hidden.
fn decode_segments<R: SignalRequest>(segments: &[Bytes]) -> R {
    let mut request = R::default();
    for segment in segments {
        match R::decode(segment.clone()) {
            Ok(part) => {
                let mut part = part;
                request.resources_mut().append(part.resources_mut());
            }
            Err(e) => {
                tracing::error!(error = %e, bytes = segment.len(), "scanned request failed to decode; its items are lost")
            }
        }
    }
    request
}

impl<R: SignalRequest> Batch<R> {
    /// Wraps a decoded request.
    pub fn new(request: R) -> Self {
        let items = request.resources().iter().map(R::count_items).sum();
        Self {
            items,
            encoded: None,
            decoded: OnceLock::from(request),
            ids_checked: false,
            trace_ids_lead: false,
        }
    }

    /// Checks protobuf bytes (without decoding them) and keeps them. Requests
    /// with malformed IDs are decoded right away so the invalid items can be
    /// dropped (see `Payload::remove_invalid_ids`).
    pub fn decode(bytes: Bytes) -> Result<Self, BatchError> {
        let scan = wire::scan(&bytes, schema_of(R::SIGNAL))?;
        if scan.invalid_ids {
            return Ok(Self::new(R::decode(bytes)?));
        }
        Ok(Self {
            items: scan.items,
            encoded: Some(vec![bytes]),
            decoded: OnceLock::new(),
            ids_checked: true,
            trace_ids_lead: R::SIGNAL == super::Signal::Traces && !scan.trace_ids_elsewhere,
        })
    }

    /// A batch of `items` items holding `segments` (which concatenate to
    /// one request, as a merged batch's do): a request assembled from
    /// the fields of this batch's own encoding (a split of it by
    /// `protobuf_segments`), which were checked when this batch was made,
    /// so they are not scanned again. What is known of this batch's IDs
    /// holds for the part (it holds the same spans, unchanged).
    ///
    /// The caller vouches for `segments`: a malformed part is found only
    /// when something decodes it (logged, its items lost).
    pub fn part_of_self(&self, segments: Vec<Bytes>, items: usize) -> Self {
        Self {
            items,
            encoded: Some(segments),
            decoded: OnceLock::new(),
            ids_checked: self.ids_checked,
            trace_ids_lead: self.trace_ids_lead,
        }
    }

    /// Number of items (spans, metric data points or log records).
    pub fn item_count(&self) -> usize {
        self.items
    }

    /// True when the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// The request, read-only (decoded on first use).
    pub fn request(&self) -> &R {
        self.decoded
            .get_or_init(|| decode_segments(self.encoded.as_deref().unwrap_or_default()))
    }

    /// The resource elements, read-only.
    pub fn resources(&self) -> &[R::Resource] {
        self.request().resources()
    }

    /// Takes the request out of the batch.
    pub fn into_request(mut self) -> R {
        self.take_request()
    }

    fn take_request(&mut self) -> R {
        match self.decoded.take() {
            Some(request) => request,
            None => decode_segments(self.encoded.as_deref().unwrap_or_default()),
        }
    }

    /// True when the scanner already found every ID well-formed.
    pub(crate) fn ids_known_valid(&self) -> bool {
        self.ids_checked
    }

    /// True when every span of the encoding starts with its trace ID: its
    /// one `trace_id` field, first, as [`LEADING_TRACE_ID`] and 16 bytes
    /// (what every serializer writes, fields in number order). Then a
    /// span's trace ID can be read at a fixed offset, where otherwise the
    /// whole span has to be walked, since a repeated field's last
    /// occurrence wins. Known from the receiver's scan; false for a batch
    /// that was not scanned or was changed.
    ///
    /// [`LEADING_TRACE_ID`]: super::LEADING_TRACE_ID
    pub fn trace_ids_lead(&self) -> bool {
        self.trace_ids_lead && self.encoded.is_some()
    }

    /// Changes the data. Forgets the original encoding and recounts the items.
    pub fn modify<T>(&mut self, f: impl FnOnce(&mut Vec<R::Resource>) -> T) -> T {
        let mut request = self.take_request();
        self.encoded = None;
        self.ids_checked = false;
        self.trace_ids_lead = false;
        let out = f(request.resources_mut());
        self.items = request.resources().iter().map(R::count_items).sum();
        self.decoded = OnceLock::from(request);
        out
    }

    /// The protobuf encoding: the received bytes when unmodified (no copy for
    /// a single request), else a fresh encoding.
    pub fn to_protobuf(&self) -> Bytes {
        match self.encoded.as_deref() {
            Some([one]) => one.clone(),
            Some(segments) => {
                let mut joined = Vec::with_capacity(segments.iter().map(Bytes::len).sum());
                for segment in segments {
                    joined.extend_from_slice(segment);
                }
                Bytes::from(joined)
            }
            None => Bytes::from(self.request().encode_to_vec()),
        }
    }

    /// The protobuf encoding as segments that concatenate to the request: the
    /// received bytes when unmodified (cheap reference-counted clones), else
    /// one fresh encoding. Lets a transport copy each byte once, into its frame.
    pub fn protobuf_segments(&self) -> Vec<Bytes> {
        match &self.encoded {
            Some(segments) => segments.clone(),
            None => vec![Bytes::from(self.request().encode_to_vec())],
        }
    }

    /// Writes the protobuf encoding into `dst` (the received bytes when
    /// unmodified), without an intermediate buffer.
    pub fn write_protobuf(&self, dst: &mut impl bytes::BufMut) {
        match &self.encoded {
            Some(segments) => {
                for segment in segments {
                    dst.put_slice(segment);
                }
            }
            // Encoding into a BufMut only fails when it lacks room, and a
            // growable buffer never does.
            None => drop(self.request().encode(dst)),
        }
    }

    /// Size of the protobuf encoding in bytes (cheap when the original bytes are kept).
    pub fn encoded_len(&self) -> usize {
        match &self.encoded {
            Some(segments) => segments.iter().map(Bytes::len).sum(),
            None => self.request().encoded_len(),
        }
    }

    /// True when the batch still carries the bytes it was decoded from.
    pub fn has_original_encoding(&self) -> bool {
        self.encoded.is_some()
    }

    /// Appends all items of `other`. When both sides carry their original
    /// protobuf bytes (or this side is empty), the merged batch keeps them, as
    /// segments: nothing is copied or decoded.
    pub fn append(&mut self, mut other: Self) {
        if other.items == 0 && other.is_structurally_empty() {
            return;
        }
        if self.items == 0 && self.is_structurally_empty() {
            *self = other;
            return;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.encoded, &mut other.encoded) {
            mine.append(theirs);
            self.items += other.items;
            self.ids_checked &= other.ids_checked;
            self.trace_ids_lead &= other.trace_ids_lead;
            // Any decoded copy no longer covers everything.
            self.decoded = OnceLock::new();
            return;
        }
        let mut request = self.take_request();
        let mut theirs = other.take_request();
        request.resources_mut().append(theirs.resources_mut());
        *self = Self::new(request);
    }

    /// No resource elements at all (cheap: no decoding for encoded batches).
    fn is_structurally_empty(&self) -> bool {
        match (&self.encoded, self.decoded.get()) {
            (Some(segments), _) => segments.iter().all(Bytes::is_empty),
            (None, Some(request)) => request.resources().is_empty(),
            (None, None) => true,
        }
    }

    /// Removes and returns the first `max_items` items (all of them when the
    /// batch holds fewer).
    pub fn split_front(&mut self, max_items: usize) -> Self {
        if max_items >= self.items {
            return std::mem::take(self);
        }
        let mut request = self.take_request();
        self.encoded = None;
        self.ids_checked = false;
        let resources = request.resources_mut();
        // Whole resource elements that fit go over in one drain (no shifting per
        // element); the element that straddles the limit is split.
        let mut taken = 0;
        let mut whole = 0;
        for resource in resources.iter() {
            let count = R::count_items(resource);
            if taken + count > max_items {
                break;
            }
            taken += count;
            whole += 1;
        }
        let mut front: Vec<R::Resource> = resources.drain(..whole).collect();
        if taken < max_items
            && let Some(straddling) = resources.first_mut()
        {
            front.push(R::split_items(straddling, max_items - taken));
        }
        *self = Self::new(request);
        Self::new(R::from_resources(front))
    }
}

#[cfg(test)]
mod tests {
    use crate::pdata::{Logs, Traces};
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn spans(trace_id: Vec<u8>) -> Bytes {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id,
                        span_id: vec![2; 8],
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    }

    #[test]
    fn leading_trace_ids_are_known_from_the_scan_and_lost_with_any_doubt() {
        let leading = Traces::decode(spans(vec![1; 16])).expect("valid");
        assert!(leading.trace_ids_lead());
        // A part of it holds the same spans.
        assert!(
            leading
                .part_of_self(vec![spans(vec![1; 16])], 1)
                .trace_ids_lead()
        );
        // Merged with a batch that cannot say the same, the merge cannot.
        let mut merged = leading.clone();
        merged.append(Traces::decode(spans(vec![1; 15])).expect("valid"));
        assert!(!merged.trace_ids_lead());
        let mut merged = leading.clone();
        merged.append(Traces::new(
            ExportTraceServiceRequest::decode(spans(vec![3; 16])).expect("valid"),
        ));
        assert!(!merged.trace_ids_lead());
        let mut merged = leading.clone();
        merged.append(Traces::decode(spans(vec![3; 16])).expect("valid"));
        assert!(merged.trace_ids_lead());
        // Changed, or never scanned: not known.
        let mut changed = leading.clone();
        changed.modify(|_| ());
        assert!(!changed.trace_ids_lead());
        assert!(!Traces::default().trace_ids_lead());
        // Logs have no spans to say it of.
        let logs = Bytes::from(ExportLogsServiceRequest::default().encode_to_vec());
        assert!(!Logs::decode(logs).expect("valid").trace_ids_lead());
    }
}
