use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::ArrayValue;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use std::time::Duration;

const NOW: u64 = 1_800_000_000_000_000_000;
const HOUR: u64 = 3_600_000_000_000;

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn span(n: u8) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![n.max(1); 8],
        name: format!("span {n}"),
        start_time_unix_nano: NOW - 1_000,
        end_time_unix_nano: NOW,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> Payload {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", "web")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Payload::Traces(Traces::decode(request.encode_to_vec().into()).expect("decode"))
}

fn spans(payload: &Payload) -> Vec<Span> {
    let Payload::Traces(t) = payload else {
        panic!("not traces")
    };
    t.resources()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn browser_limits() -> RequestLimits {
    RequestLimits::new(&RequestLimitsConfig {
        max_items_per_request: 4,
        max_attributes: 128,
        max_attribute_value_length: 4096,
        max_events_per_span: 2,
        max_links_per_span: 1,
        max_timestamp_skew: Some(Duration::from_secs(24 * 3600)),
    })
}

#[test]
fn a_request_within_the_limits_is_untouched_and_keeps_its_encoding() {
    let mut s = span(1);
    s.attributes = vec![string("http.url", "https://example.com/")];
    s.events = vec![Event::default()];
    let mut payload = traces(vec![s, span(2)]);
    let before = payload.clone();
    let cuts = browser_limits().apply(&mut payload, NOW);
    assert_eq!(cuts, Cuts::default());
    assert_eq!(payload, before);
    let Payload::Traces(t) = &payload else {
        unreachable!()
    };
    assert!(t.has_original_encoding(), "nothing re-encoded");
}

#[test]
fn ten_thousand_attributes_and_a_mebibyte_value_are_cut_like_the_sdk_does() {
    let mut s = span(1);
    s.attributes = (0..10_000).map(|i| string(&format!("k{i}"), "v")).collect();
    s.attributes[0] = string("big", &"x".repeat(1024 * 1024));
    s.dropped_attributes_count = 3;
    let mut payload = traces(vec![s]);
    let cuts = browser_limits().apply(&mut payload, NOW);
    let got = &spans(&payload)[0];
    assert_eq!(got.attributes.len(), 128);
    assert_eq!(got.attributes[1].key, "k1", "the first attributes are kept");
    assert_eq!(got.dropped_attributes_count, 3 + 9_872);
    let Some(any_value::Value::StringValue(big)) =
        &got.attributes[0].value.as_ref().expect("value").value
    else {
        panic!("string")
    };
    assert_eq!(big.len(), 4096);
    assert_eq!(cuts.attributes, 9_872);
    assert_eq!(cuts.values, 1);
}

#[test]
fn values_are_cut_at_characters_also_inside_arrays() {
    let mut s = span(1);
    s.attributes = vec![
        string("emoji", &"é🙂".repeat(3000)),
        KeyValue {
            key: "list".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("y".repeat(5000))),
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(7)),
                        },
                    ],
                })),
            }),
            ..Default::default()
        },
    ];
    let mut payload = traces(vec![s]);
    let cuts = browser_limits().apply(&mut payload, NOW);
    let got = &spans(&payload)[0];
    let Some(any_value::Value::StringValue(emoji)) =
        &got.attributes[0].value.as_ref().expect("value").value
    else {
        panic!("string")
    };
    assert_eq!(emoji.chars().count(), 4096);
    let Some(any_value::Value::ArrayValue(list)) =
        &got.attributes[1].value.as_ref().expect("value").value
    else {
        panic!("array")
    };
    let Some(any_value::Value::StringValue(y)) = &list.values[0].value else {
        panic!("string")
    };
    assert_eq!(y.len(), 4096);
    assert_eq!(cuts.values, 2);
}

#[test]
fn events_and_links_over_the_limit_are_dropped_and_counted() {
    let mut s = span(1);
    s.events = (0..5)
        .map(|i| Event {
            name: format!("e{i}"),
            ..Default::default()
        })
        .collect();
    s.links = vec![Link::default(), Link::default(), Link::default()];
    let mut payload = traces(vec![s]);
    let cuts = browser_limits().apply(&mut payload, NOW);
    let got = &spans(&payload)[0];
    assert_eq!(
        got.events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["e0", "e1"]
    );
    assert_eq!(got.dropped_events_count, 3);
    assert_eq!(got.links.len(), 1);
    assert_eq!(got.dropped_links_count, 2);
    assert_eq!((cuts.events, cuts.links), (3, 2));
}

#[test]
fn spans_beyond_the_request_limit_are_refused() {
    let mut payload = traces((1..=10).map(span).collect());
    let cuts = browser_limits().apply(&mut payload, NOW);
    assert_eq!(cuts.refused_over_count, 6);
    let names: Vec<String> = spans(&payload).into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["span 1", "span 2", "span 3", "span 4"]);
}

#[test]
fn spans_and_logs_far_from_the_clock_are_refused_unset_times_are_not() {
    let mut old = span(1);
    old.start_time_unix_nano = NOW - 25 * HOUR;
    let mut future = span(2);
    future.end_time_unix_nano = NOW + 25 * HOUR;
    let mut late_but_fine = span(3);
    late_but_fine.start_time_unix_nano = NOW - 23 * HOUR;
    let mut payload = traces(vec![old, future, late_but_fine]);
    let cuts = browser_limits().apply(&mut payload, NOW);
    assert_eq!(cuts.refused_skewed, 2);
    assert_eq!(spans(&payload)[0].name, "span 3");

    let records = vec![
        LogRecord {
            time_unix_nano: NOW - 48 * HOUR,
            ..Default::default()
        },
        LogRecord {
            time_unix_nano: 0,
            observed_time_unix_nano: NOW,
            ..Default::default()
        },
    ];
    let mut logs = Payload::Logs(Logs::new(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }));
    let cuts = browser_limits().apply(&mut logs, NOW);
    assert_eq!(cuts.refused_skewed, 1);
    assert_eq!(logs.item_count(), 1);
}

#[test]
fn log_record_and_data_point_attributes_are_limited_too() {
    let many: Vec<KeyValue> = (0..200).map(|i| string(&format!("k{i}"), "v")).collect();
    let mut logs = Payload::Logs(Logs::new(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    attributes: many.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }));
    let cuts = browser_limits().apply(&mut logs, NOW);
    assert_eq!(cuts.attributes, 72);
    let Payload::Logs(l) = &logs else {
        unreachable!()
    };
    let record = &l.resources()[0].scope_logs[0].log_records[0];
    assert_eq!(record.attributes.len(), 128);
    assert_eq!(record.dropped_attributes_count, 72);

    let mut metrics = Payload::Metrics(Metrics::new(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "web_vitals.lcp".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: many,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }));
    let cuts = browser_limits().apply(&mut metrics, NOW);
    assert_eq!(cuts.attributes, 72);
}

#[test]
fn zero_means_no_limit() {
    let limits = RequestLimits::new(&RequestLimitsConfig {
        max_items_per_request: 0,
        max_attributes: 0,
        max_attribute_value_length: 0,
        max_events_per_span: 0,
        max_links_per_span: 0,
        max_timestamp_skew: None,
    });
    let mut s = span(1);
    s.attributes = (0..1000).map(|i| string(&format!("k{i}"), "v")).collect();
    s.start_time_unix_nano = 1;
    let mut payload = traces((0..50).map(|_| s.clone()).collect());
    let before = payload.clone();
    assert_eq!(limits.apply(&mut payload, NOW), Cuts::default());
    assert_eq!(payload, before);
}
