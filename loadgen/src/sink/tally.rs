//! What the sink has received so far, readable while requests keep arriving.

use super::count::Signal;
use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the sink started (they never reset: readers take deltas).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    spans: AtomicU64,
    data_points: AtomicU64,
    log_records: AtomicU64,
    requests: AtomicU64,
    malformed_requests: AtomicU64,
    message_bytes: AtomicU64,
    wire_bytes: AtomicU64,
    gzip_requests: AtomicU64,
    zstd_requests: AtomicU64,
    other_encoding_requests: AtomicU64,
}

impl Tally {
    /// One well-formed request of `items` items, `bytes` long once decompressed.
    pub(crate) fn record(&self, signal: Signal, items: u64, bytes: usize) {
        let counter = match signal {
            Signal::Traces => &self.spans,
            Signal::Metrics => &self.data_points,
            Signal::Logs => &self.log_records,
        };
        counter.fetch_add(items, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` of a request body as received (before decompression).
    pub(crate) fn record_wire_bytes(&self, bytes: usize) {
        self.wire_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One request whose body was not a valid export request.
    pub(crate) fn record_malformed(&self) {
        self.malformed_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The request's `grpc-encoding` header (`None` when uncompressed).
    pub(crate) fn note_encoding(&self, encoding: Option<&str>) {
        let counter = match encoding {
            None | Some("identity") => return,
            Some("gzip") => &self.gzip_requests,
            Some("zstd") => &self.zstd_requests,
            Some(_) => &self.other_encoding_requests,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals as one JSON object, e.g. `{"spans":1200,"requests":3,...}`.
    pub(crate) fn to_json(&self) -> String {
        let fields = [
            ("spans", &self.spans),
            ("requests", &self.requests),
            ("data_points", &self.data_points),
            ("log_records", &self.log_records),
            ("malformed_requests", &self.malformed_requests),
            ("message_bytes", &self.message_bytes),
            ("wire_bytes", &self.wire_bytes),
            ("gzip_requests", &self.gzip_requests),
            ("zstd_requests", &self.zstd_requests),
            ("other_encoding_requests", &self.other_encoding_requests),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("\"{name}\":{}", value.load(Ordering::Relaxed)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_counts() {
        let tally = Tally::default();
        tally.record(Signal::Traces, 100, 5000);
        tally.record(Signal::Traces, 50, 2500);
        tally.record(Signal::Logs, 7, 10);
        tally.note_encoding(Some("gzip"));
        tally.note_encoding(None);
        let json = tally.to_json();
        assert!(json.starts_with("{\"spans\":150,\"requests\":3,"), "{json}");
        assert!(json.contains("\"log_records\":7"), "{json}");
        assert!(json.contains("\"gzip_requests\":1"), "{json}");
        assert!(json.contains("\"message_bytes\":7510"), "{json}");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["spans"], 150);
    }
}
