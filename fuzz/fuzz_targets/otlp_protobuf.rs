//! The OTLP protobuf intake: the wire scanner (which checks bytes without
//! decoding them, so a request can be forwarded as received) must accept
//! exactly what prost accepts, count the same items, and hand on the same
//! request. The first byte picks the signal.
#![no_main]

use bytes::Bytes;
use collector_core::pdata::{Batch, SignalRequest};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fn check<R: SignalRequest + std::fmt::Debug>(data: &[u8]) {
    let scanned = Batch::<R>::decode(Bytes::copy_from_slice(data));
    let decoded = R::decode(data);
    match (scanned, decoded) {
        (Ok(batch), Ok(request)) => {
            let items: usize = request.resources().iter().map(R::count_items).sum();
            assert_eq!(batch.item_count(), items, "item count");
            // Compared encoded: NaN values (a histogram's bounds, say) are
            // not equal to themselves.
            let expected = request.encode_to_vec();
            assert_eq!(batch.request().encode_to_vec(), expected, "decoded request");
            // What an exporter sends (the received bytes, unmodified)
            // decodes to the same request again.
            let sent = R::decode(batch.to_protobuf()).expect("re-decode what is sent");
            assert_eq!(sent.encode_to_vec(), expected, "sent bytes");
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("scanner accepted what prost refuses: {e}"),
        (Err(e), Ok(_)) => panic!("scanner refused what prost accepts: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => check::<ExportTraceServiceRequest>(body),
        1 => check::<ExportMetricsServiceRequest>(body),
        _ => check::<ExportLogsServiceRequest>(body),
    }
});
