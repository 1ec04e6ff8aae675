//! The OTLP/JSON decoder (OTLP/HTTP bodies, the browser's): whatever the
//! body, an error or a request, never a panic; a decoded request encodes to
//! JSON that decodes to the same request. The first byte picks the signal.
#![no_main]

use collector_core::pdata::json;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // Compared as protobuf bytes: NaN values are not equal to themselves.
    match selector % 3 {
        0 => {
            if let Ok(request) = json::decode_traces(body) {
                let again = json::decode_traces(&json::encode_traces(&request))
                    .expect("our own JSON decodes");
                assert_eq!(again.encode_to_vec(), request.encode_to_vec());
            }
        }
        1 => {
            if let Ok(request) = json::decode_metrics(body) {
                let again = json::decode_metrics(&json::encode_metrics(&request))
                    .expect("our own JSON decodes");
                assert_eq!(again.encode_to_vec(), request.encode_to_vec());
            }
        }
        _ => {
            if let Ok(request) = json::decode_logs(body) {
                let again =
                    json::decode_logs(&json::encode_logs(&request)).expect("our own JSON decodes");
                assert_eq!(again.encode_to_vec(), request.encode_to_vec());
            }
        }
    }
});
