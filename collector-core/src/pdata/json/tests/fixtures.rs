//! Fully populated requests: every field set, every variant used.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

// --- fixtures ---------------------------------------------------------------

pub(super) fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

pub(super) fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any(v)),
        key_strindex: 0,
    }
}

/// Attributes covering every AnyValue variant, nesting, and values that
/// hold their type's default (which must still round-trip as present).
pub(super) fn attrs() -> Vec<KeyValue> {
    vec![
        kv(
            "str",
            Value::StringValue("héllo \"quoted\" \\ \n\t\u{1}".into()),
        ),
        kv("empty-str", Value::StringValue(String::new())),
        kv("bool", Value::BoolValue(true)),
        kv("false", Value::BoolValue(false)),
        kv("int", Value::IntValue(-9_007_199_254_740_993)),
        kv("zero", Value::IntValue(0)),
        kv("double", Value::DoubleValue(3.25)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2, 250, 255])),
        kv("strindex", Value::StringValueStrindex(7)),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    any(Value::IntValue(1)),
                    AnyValue { value: None },
                    any(Value::KvlistValue(KeyValueList {
                        values: vec![kv("deep", Value::DoubleValue(-0.5))],
                    })),
                ],
            }),
        ),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("a", Value::ArrayValue(ArrayValue { values: vec![] })),
                    KeyValue {
                        key: "no-value".into(),
                        value: None,
                        key_strindex: 3,
                    },
                ],
            }),
        ),
        KeyValue {
            key: "empty-any".into(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
    ]
}

pub(super) fn resource() -> Resource {
    Resource {
        attributes: attrs(),
        dropped_attributes_count: 2,
        entity_refs: vec![EntityRef {
            schema_url: "https://schema/entity".into(),
            r#type: "service".into(),
            id_keys: vec!["service.name".into(), "service.instance.id".into()],
            description_keys: vec!["service.version".into()],
        }],
    }
}

pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "my.library".into(),
        version: "1.2.3".into(),
        attributes: vec![kv("scope.attr", Value::StringValue("x".into()))],
        dropped_attributes_count: 4,
    }
}

pub(super) fn full_traces() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (0xA0..=0xA7).collect(),
        trace_state: "rojo=00f067aa0ba902b7".into(),
        parent_span_id: vec![0xff; 8],
        flags: 0x301,
        name: "GET /api".into(),
        kind: 2,
        start_time_unix_nano: 1_544_712_660_000_000_000,
        end_time_unix_nano: u64::MAX,
        attributes: attrs(),
        dropped_attributes_count: 1,
        events: vec![
            Event {
                time_unix_nano: 1_544_712_660_500_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", Value::StringValue("boom".into()))],
                dropped_attributes_count: 3,
            },
            Event::default(),
        ],
        dropped_events_count: 5,
        links: vec![Link {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: "congo=t61rcWkgMzE".into(),
            attributes: vec![kv("link.attr", Value::BoolValue(true))],
            dropped_attributes_count: 6,
            flags: 0x101,
        }],
        dropped_links_count: 7,
        status: Some(Status {
            message: "it failed".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource()),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(scope()),
                        spans: vec![span, Span::default()],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeSpans {
                        scope: Some(InstrumentationScope::default()),
                        spans: vec![],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
            },
            ResourceSpans::default(),
        ],
    }
}

pub(super) fn exemplars() -> Vec<Exemplar> {
    vec![
        Exemplar {
            filtered_attributes: attrs(),
            time_unix_nano: 42,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(exemplar::Value::AsDouble(0.0)),
        },
        Exemplar {
            filtered_attributes: vec![],
            time_unix_nano: 0,
            span_id: vec![],
            trace_id: vec![],
            value: Some(exemplar::Value::AsInt(i64::MIN)),
        },
        Exemplar::default(),
    ]
}

pub(super) fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "ms".into(),
        metadata: vec![kv("meta", Value::StringValue("m".into()))],
        data: Some(data),
    }
}

pub(super) fn number_point(value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(),
        start_time_unix_nano: 1,
        time_unix_nano: u64::MAX - 1,
        exemplars: exemplars(),
        flags: 1,
        value: Some(value),
    }
}

pub(super) fn full_metrics() -> ExportMetricsServiceRequest {
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![
                    number_point(number_data_point::Value::AsDouble(12.5)),
                    number_point(number_data_point::Value::AsDouble(f64::NAN)),
                    number_point(number_data_point::Value::AsInt(0)),
                    NumberDataPoint::default(),
                ],
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: vec![number_point(number_data_point::Value::AsInt(i64::MAX))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: attrs(),
                        start_time_unix_nano: 10,
                        time_unix_nano: 20,
                        count: 30,
                        sum: Some(0.0),
                        bucket_counts: vec![0, 10, u64::MAX, 0],
                        explicit_bounds: vec![-1.5, 0.0, 1e300],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(-2.0),
                        max: Some(f64::NEG_INFINITY),
                    },
                    HistogramDataPoint::default(),
                ],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exp_histogram",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: attrs(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(4.5),
                        scale: -3,
                        zero_count: 5,
                        positive: Some(Buckets {
                            offset: -7,
                            bucket_counts: vec![1, 0, 3],
                        }),
                        negative: Some(Buckets::default()),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(0.0),
                        max: Some(9.75),
                        zero_threshold: 1e-9,
                    },
                    ExponentialHistogramDataPoint::default(),
                ],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs(),
                    start_time_unix_nano: 100,
                    time_unix_nano: 200,
                    count: 300,
                    sum: 1234.5678,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.0,
                            value: 1.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 250.0,
                        },
                        ValueAtQuantile::default(),
                    ],
                    flags: 1,
                }],
            }),
        ),
        Metric {
            name: "no-data".into(),
            ..Metric::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: "https://scope/schema".into(),
            }],
            schema_url: "https://resource/schema".into(),
        }],
    }
}

pub(super) fn full_logs() -> ExportLogsServiceRequest {
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_000_000_001,
        observed_time_unix_nano: 1_700_000_000_000_000_002,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(any(Value::KvlistValue(KeyValueList { values: attrs() }))),
        attributes: attrs(),
        dropped_attributes_count: 8,
        flags: 1,
        trace_id: vec![0x5b; 16],
        span_id: vec![0xee; 8],
        event_name: "browser.page_view".into(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: vec![
                    record,
                    LogRecord {
                        body: Some(AnyValue { value: None }),
                        ..LogRecord::default()
                    },
                    LogRecord::default(),
                ],
                schema_url: "https://scope/schema".into(),
            }],
            schema_url: "https://resource/schema".into(),
        }],
    }
}
