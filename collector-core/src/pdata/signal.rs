//! The generic batch type shared by the three signals.

use bytes::Bytes;
use prost::Message;

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
}

/// Why bytes could not be turned into a batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The protobuf encoding is invalid (truncated, wrong wire types, invalid UTF-8,
    /// nesting deeper than prost's recursion limit).
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The OTLP/JSON encoding is invalid.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] super::json::JsonError),
}

/// One OTLP export request of a signal, plus its item count and, while it is
/// unmodified, the protobuf bytes it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<R: SignalRequest> {
    request: R,
    items: usize,
    /// Protobuf encoding of `request`, kept while it is known to be exact: the
    /// received requests' bytes, one segment per merged request. Protobuf
    /// messages concatenate, so the segments in order encode the whole
    /// request, and merging stays O(1) per request instead of copying.
    encoded: Option<Vec<Bytes>>,
}

impl<R: SignalRequest> Default for Batch<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R: SignalRequest> Batch<R> {
    /// Wraps a decoded request.
    pub fn new(request: R) -> Self {
        let items = request.resources().iter().map(R::count_items).sum();
        Self {
            request,
            items,
            encoded: None,
        }
    }

    /// Decodes protobuf bytes and keeps them for a later pass-through export.
    pub fn decode(bytes: Bytes) -> Result<Self, BatchError> {
        let request = R::decode(bytes.clone())?;
        let mut batch = Self::new(request);
        batch.encoded = Some(vec![bytes]);
        Ok(batch)
    }

    /// Number of items (spans, metric data points or log records).
    pub fn item_count(&self) -> usize {
        self.items
    }

    /// True when the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// The request, read-only.
    pub fn request(&self) -> &R {
        &self.request
    }

    /// The resource elements, read-only.
    pub fn resources(&self) -> &[R::Resource] {
        self.request.resources()
    }

    /// Takes the request out of the batch.
    pub fn into_request(self) -> R {
        self.request
    }

    /// Changes the data. Forgets the original encoding and recounts the items.
    pub fn modify<T>(&mut self, f: impl FnOnce(&mut Vec<R::Resource>) -> T) -> T {
        self.encoded = None;
        let out = f(self.request.resources_mut());
        self.items = self.request.resources().iter().map(R::count_items).sum();
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
            None => Bytes::from(self.request.encode_to_vec()),
        }
    }

    /// The protobuf encoding as segments that concatenate to the request: the
    /// received bytes when unmodified (cheap reference-counted clones), else
    /// one fresh encoding. Lets a transport copy each byte once, into its frame.
    pub fn protobuf_segments(&self) -> Vec<Bytes> {
        match &self.encoded {
            Some(segments) => segments.clone(),
            None => vec![Bytes::from(self.request.encode_to_vec())],
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
            None => drop(self.request.encode(dst)),
        }
    }

    /// Size of the protobuf encoding in bytes (cheap when the original bytes are kept).
    pub fn encoded_len(&self) -> usize {
        match &self.encoded {
            Some(segments) => segments.iter().map(Bytes::len).sum(),
            None => self.request.encoded_len(),
        }
    }

    /// True when the batch still carries the bytes it was decoded from.
    pub fn has_original_encoding(&self) -> bool {
        self.encoded.is_some()
    }

    /// Appends all items of `other`. When both sides carry their original
    /// protobuf bytes (or this side is empty), the merged batch keeps them, as
    /// segments: nothing is copied.
    pub fn append(&mut self, other: Self) {
        if other.items == 0 && other.request.resources().is_empty() {
            return;
        }
        self.encoded = if self.request.resources().is_empty() {
            other.encoded
        } else {
            match (self.encoded.take(), other.encoded) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            }
        };
        self.items += other.items;
        self.request
            .resources_mut()
            .extend(other.request.into_resources());
    }

    /// Removes and returns the first `max_items` items (all of them when the
    /// batch holds fewer).
    pub fn split_front(&mut self, max_items: usize) -> Self {
        if max_items >= self.items {
            return std::mem::take(self);
        }
        self.encoded = None;
        let resources = self.request.resources_mut();
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
            taken = max_items;
        }
        self.items -= taken;
        Self {
            request: R::from_resources(front),
            items: taken,
            encoded: None,
        }
    }
}

/// Moving the resources out of a request without cloning.
trait IntoResources: SignalRequest {
    fn into_resources(self) -> Vec<Self::Resource>;
}

impl<R: SignalRequest> IntoResources for R {
    fn into_resources(mut self) -> Vec<Self::Resource> {
        std::mem::take(self.resources_mut())
    }
}
