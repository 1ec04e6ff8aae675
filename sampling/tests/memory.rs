//! Resident memory per buffered span, measured in this process (one test
//! per file, so no other test allocates meanwhile).
//!
//! 50,000 traces of 10 spans are buffered, arriving as in the gateway bench
//! (100 spans per request, spans shaped like `loadgen`'s: 4 string
//! attributes of 16 bytes). The goal from issue 5 is an RSS growth per
//! buffered span within 2x of the span's OTLP-encoded size.

#![allow(clippy::unwrap_used)]

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sampling::{Sampler, Timestamp};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

const TRACES: u64 = 50_000;
const SPANS_PER_TRACE: u64 = 10;
const SPANS_PER_REQUEST: u64 = 100;

/// Request `n`: 10 whole traces of 10 spans, one resource, one scope.
fn request(n: u64) -> ResourceSpans {
    let mut spans = Vec::with_capacity(SPANS_PER_REQUEST as usize);
    let mut trace_id = Vec::new();
    let mut root = Vec::new();
    for i in 0..SPANS_PER_REQUEST {
        if i % SPANS_PER_TRACE == 0 {
            let t = mix(n * 1000 + i + 1);
            trace_id = [t.to_be_bytes(), mix(t).to_be_bytes()].concat();
            root.clear();
        }
        let span_id = mix(n * 7919 + i + 3).to_be_bytes().to_vec();
        let parent = root.clone();
        if root.is_empty() {
            root = span_id.clone();
        }
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id,
            parent_span_id: parent,
            name: format!("operation-{}", i % SPANS_PER_TRACE),
            kind: if i % SPANS_PER_TRACE == 0 { 2 } else { 3 },
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_001_000_000 + i,
            attributes: (0..4)
                .map(|a| string_kv(&format!("attr.{a}"), format!("{:016x}", mix(n ^ i ^ a))))
                .collect(),
            ..Default::default()
        });
    }
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string_kv(
                "service.name",
                format!("ollyscale-svc-{}", n % 8),
            )],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "otel-loadgen".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn rss_per_buffered_span_is_within_twice_the_encoded_size() {
    let mut sampler = Sampler::from_yaml(
        "decision_wait: 1h\nnum_traces: 100000\nmax_memory_mib: 0\npolicies: [{name: all, type: always_sample}]",
    )
    .unwrap();
    let requests = TRACES * SPANS_PER_TRACE / SPANS_PER_REQUEST;
    // Encoded size of the spans alone (without resource and scope).
    let mut encoded: u64 = 0;
    let before = rss_bytes();
    for n in 0..requests {
        let rs = request(n);
        encoded += rs.scope_spans[0]
            .spans
            .iter()
            .map(|s| s.encoded_len() as u64)
            .sum::<u64>();
        sampler.ingest(vec![rs], Timestamp::from_millis(n));
    }
    let after = rss_bytes();
    let spans = TRACES * SPANS_PER_TRACE;
    assert_eq!(sampler.buffered_spans(), spans);
    assert_eq!(sampler.pending_traces() as u64, TRACES);
    #[allow(clippy::cast_precision_loss)]
    let (per_span, span_size, accounted) = (
        after.saturating_sub(before) as f64 / spans as f64,
        encoded as f64 / spans as f64,
        sampler.buffered_bytes() as f64 / spans as f64,
    );
    println!(
        "RSS growth per buffered span: {per_span:.1} bytes; encoded span: {span_size:.1} bytes; \
         ratio {:.2}; accounted by max_memory_mib: {accounted:.1} bytes/span",
        per_span / span_size
    );
    assert!(
        per_span <= 2.0 * span_size,
        "{per_span:.1} bytes of RSS per span of {span_size:.1} bytes"
    );
    // The accounting max_memory_mib uses is close to the real cost.
    assert!(
        accounted >= 0.8 * per_span,
        "accounted {accounted:.1} < 80% of {per_span:.1}"
    );
    // Everything is still decided.
    let decided = sampler.flush_all(Timestamp::from_secs(10));
    assert_eq!(decided.len() as u64, TRACES);
}
