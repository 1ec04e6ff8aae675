//! Helpers for policy tests: build traces and policies tersely.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;

use super::{BoxedPolicy, Level, TraceView, build};
use crate::clock::Timestamp;
use crate::config::PolicyConfig;
use crate::decision::Decision;
use crate::trace_id::TraceId;

pub(crate) const TEST_TRACE_ID: TraceId = TraceId([7; 16]);

pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(crate) fn s(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.to_owned()))
}

pub(crate) fn i(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

pub(crate) fn f(key: &str, v: f64) -> KeyValue {
    kv(key, Value::DoubleValue(v))
}

pub(crate) fn b(key: &str, v: bool) -> KeyValue {
    kv(key, Value::BoolValue(v))
}

/// A span of the test trace with these attributes.
pub(crate) fn span(attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TEST_TRACE_ID.0.to_vec(),
        span_id: vec![1; 8],
        name: "op".into(),
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_100_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

pub(crate) fn with_status(mut span: Span, code: i32) -> Span {
    span.status = Some(Status {
        code,
        ..Default::default()
    });
    span
}

pub(crate) fn with_times(mut span: Span, start_ms: u64, end_ms: u64) -> Span {
    span.start_time_unix_nano = start_ms * 1_000_000;
    span.end_time_unix_nano = end_ms * 1_000_000;
    span
}

/// One resource with these attributes holding these spans in one scope.
pub(crate) fn rs(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn view_at(batches: &[ResourceSpans], now: Timestamp) -> TraceView<'_> {
    let span_count = batches
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum();
    let size_bytes = TracesData {
        resource_spans: batches.to_vec(),
    }
    .encoded_len() as u64;
    TraceView {
        trace_id: &TEST_TRACE_ID,
        batches,
        span_count,
        size_bytes,
        now,
    }
}

pub(crate) fn view(batches: &[ResourceSpans]) -> TraceView<'_> {
    view_at(batches, Timestamp::from_secs(100))
}

/// Builds a policy from the YAML of one policy entry.
pub(crate) fn policy(yaml: &str) -> BoxedPolicy {
    let cfg: PolicyConfig = serde_yaml_ng::from_str(yaml).expect("policy yaml");
    match build(&cfg, "policies[0]", Level::Top) {
        Ok(p) => p,
        Err(e) => panic!("policy does not build: {e:?}"),
    }
}

/// The configuration problems of a policy, as `path: message` strings.
pub(crate) fn policy_errors(yaml: &str) -> Vec<String> {
    let cfg: PolicyConfig = serde_yaml_ng::from_str(yaml).expect("policy yaml");
    match build(&cfg, "policies[0]", Level::Top) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

pub(crate) fn eval(policy: &mut BoxedPolicy, batches: &[ResourceSpans]) -> Decision {
    policy.evaluate(&view(batches))
}
