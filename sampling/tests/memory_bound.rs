//! With a small `max_memory_mib`, a flood of traces keeps the process's RSS
//! bounded, and every trace still gets a decision (one test per file: RSS is
//! per process).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use sampling::{Sampler, Timestamp, TraceId};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

const TRACES: u64 = 25_000;
const SPANS_PER_TRACE: u64 = 10;
const TRACES_PER_REQUEST: u64 = 10;
const MAX_MEMORY_MIB: u64 = 4;

#[test]
fn flood_keeps_rss_bounded_and_decides_every_trace() {
    let mut sampler = Sampler::from_yaml(&format!(
        "decision_wait: 30s\nmax_memory_mib: {MAX_MEMORY_MIB}\npolicies:\n\
         - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}\n\
         - {{name: five, type: probabilistic, probabilistic: {{sampling_percentage: 5}}}}"
    ))
    .unwrap();
    let payload = "p".repeat(800);
    let mut decided: HashSet<TraceId> = HashSet::new();
    let mut decided_spans: u64 = 0;
    let mut flood_bytes: u64 = 0;
    let mut peak_growth: u64 = 0;
    let before = rss_bytes();
    for request in 0..TRACES / TRACES_PER_REQUEST {
        let mut spans = Vec::new();
        for t in 0..TRACES_PER_REQUEST {
            let n = request * TRACES_PER_REQUEST + t;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_be_bytes());
            id[8..].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            for s in 0..SPANS_PER_TRACE {
                spans.push(Span {
                    trace_id: id.to_vec(),
                    span_id: (s + 1).to_be_bytes().to_vec(),
                    parent_span_id: if s == 0 {
                        vec![]
                    } else {
                        1u64.to_be_bytes().to_vec()
                    },
                    name: "op".into(),
                    attributes: vec![kv("payload", &payload)],
                    status: (n.is_multiple_of(20) && s == 3).then(|| Status {
                        code: 2,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        let rs = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "flood")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        };
        flood_bytes += rs.encoded_len() as u64;
        // All within decision_wait: only the memory limit decides.
        let out = sampler.ingest(vec![rs], Timestamp::from_millis(request));
        for d in out.decided {
            assert!(decided.insert(d.trace_id), "decided twice");
            decided_spans += d.span_count;
        }
        assert!(sampler.buffered_bytes() <= MAX_MEMORY_MIB << 20);
        peak_growth = peak_growth.max(rss_bytes().saturating_sub(before));
    }
    for d in sampler.flush_all(Timestamp::from_secs(20)) {
        assert!(decided.insert(d.trace_id), "decided twice");
        decided_spans += d.span_count;
    }
    assert_eq!(decided.len() as u64, TRACES);
    assert_eq!(decided_spans, TRACES * SPANS_PER_TRACE);
    let st = sampler.stats();
    assert!(
        st.triggers.memory_limit > TRACES * 9 / 10,
        "{:?}",
        st.triggers
    );
    assert!(st.global.sampled > 0 && st.global.sampled < TRACES / 5);
    println!(
        "flooded {} MiB through a {MAX_MEMORY_MIB} MiB buffer; peak RSS growth {} MiB",
        flood_bytes >> 20,
        peak_growth >> 20
    );
    // The flood is ~200 MiB; the buffer holds 4 MiB; the decision caches
    // (25,000 IDs) and allocator slack a few more. Generous bound:
    assert!(flood_bytes > 150 << 20);
    assert!(
        peak_growth < 32 << 20,
        "RSS grew by {} MiB",
        peak_growth >> 20
    );
}
