//! A persistent queue's record on disk: the `file_storage` value file
//! (magic, length, CRC-32, value) and the OTLP request inside it. A damaged
//! file must be an error (counted and skipped by the queue), never a panic.
//! First byte: bit 0 = take the rest as a whole file (damaged headers), else
//! as a value framed correctly (to reach the request inside); the other bits
//! pick the signal.
#![no_main]

use bytes::Bytes;
use collector_core::fuzzing::{file_storage_file, file_storage_record};
use collector_core::pdata::{Logs, Metrics, Traces};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let file = if selector & 1 == 0 {
        rest.to_vec()
    } else {
        file_storage_file(rest)
    };
    let Ok(value) = file_storage_record(file) else {
        return;
    };
    if selector & 1 == 1 {
        assert_eq!(value.as_ref(), rest, "a well-framed value reads back whole");
    }
    let value = Bytes::copy_from_slice(&value);
    match (selector >> 1) % 3 {
        0 => drop(Traces::decode(value).map(|b| b.request().resource_spans.len())),
        1 => drop(Metrics::decode(value).map(|b| b.request().resource_metrics.len())),
        _ => drop(Logs::decode(value).map(|b| b.request().resource_logs.len())),
    }
});
