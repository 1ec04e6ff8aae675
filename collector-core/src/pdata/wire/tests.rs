//! The scanner must accept exactly what prost accepts, and count items.

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attributes() -> Vec<KeyValue> {
    vec![
        kv("s", Value::StringValue("ünïcode".into())),
        kv("i", Value::IntValue(-42)),
        kv("d", Value::DoubleValue(1.5)),
        kv("b", Value::BoolValue(true)),
        kv("bytes", Value::BytesValue(vec![0, 1, 2])),
        kv(
            "list",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::IntValue(1)),
                }],
            }),
        ),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Value::StringValue("x".into()))],
            }),
        ),
    ]
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: attributes(),
        dropped_attributes_count: 1,
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.0".into(),
        attributes: attributes(),
        dropped_attributes_count: 2,
    })
}

pub(crate) fn traces() -> ExportTraceServiceRequest {
    let span = |n: u8| Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        parent_span_id: if n.is_multiple_of(2) {
            vec![]
        } else {
            vec![9; 8]
        },
        trace_state: "k=v".into(),
        flags: 0x101,
        name: format!("span-{n}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: attributes(),
        dropped_attributes_count: 3,
        events: vec![span::Event {
            time_unix_nano: 5,
            name: "e".into(),
            attributes: attributes(),
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 4,
        links: vec![span::Link {
            trace_id: vec![7; 16],
            span_id: vec![7; 8],
            trace_state: "a=b".into(),
            attributes: attributes(),
            dropped_attributes_count: 1,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(Status {
            message: "boom".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![span(1), span(2), span(3)],
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let exemplar = Exemplar {
        filtered_attributes: attributes(),
        time_unix_nano: 1,
        span_id: vec![1; 8],
        trace_id: vec![1; 16],
        value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsInt(3)),
    };
    let number = NumberDataPoint {
        attributes: attributes(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: vec![exemplar.clone()],
        flags: 1,
        value: Some(number_data_point::Value::AsDouble(2.5)),
    };
    let metric = |name: &str, data: Data| Metric {
        name: name.into(),
        description: "d".into(),
        unit: "1".into(),
        metadata: attributes(),
        data: Some(data),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: vec![number.clone(), number.clone()],
                        }),
                    ),
                    metric(
                        "s",
                        Data::Sum(Sum {
                            data_points: vec![number],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "h",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: attributes(),
                                count: 3,
                                sum: Some(4.0),
                                bucket_counts: vec![1, 2, 0],
                                explicit_bounds: vec![1.0, 2.0],
                                exemplars: vec![exemplar.clone()],
                                min: Some(0.5),
                                max: Some(9.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        }),
                    ),
                    metric(
                        "e",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                count: 2,
                                scale: -3,
                                zero_count: 1,
                                positive: Some(Buckets {
                                    offset: -2,
                                    bucket_counts: vec![1, 300, 70000],
                                }),
                                negative: Some(Buckets {
                                    offset: 1,
                                    bucket_counts: vec![5],
                                }),
                                exemplars: vec![exemplar],
                                zero_threshold: 0.1,
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "q",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                count: 1,
                                sum: 2.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 1.0,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let record = |n: u8| LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 2,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue("hello".into())),
        }),
        attributes: attributes(),
        dropped_attributes_count: 1,
        flags: 1,
        trace_id: if n == 0 { vec![] } else { vec![n; 16] },
        span_id: if n == 0 { vec![] } else { vec![n; 8] },
        event_name: "ev".into(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![record(0), record(1)],
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        }],
    }
}

#[test]
fn valid_requests_scan_with_their_item_counts() {
    assert_eq!(
        scan(&traces().encode_to_vec(), &TRACES_REQUEST),
        Ok(Scan {
            items: 3,
            invalid_ids: false,
            trace_ids_elsewhere: false,
        })
    );
    assert_eq!(
        scan(&metrics().encode_to_vec(), &METRICS_REQUEST),
        Ok(Scan {
            items: 6,
            invalid_ids: false,
            trace_ids_elsewhere: false,
        })
    );
    assert_eq!(
        scan(&logs().encode_to_vec(), &LOGS_REQUEST),
        Ok(Scan {
            items: 2,
            invalid_ids: false,
            trace_ids_elsewhere: false,
        })
    );
    assert_eq!(scan(&[], &TRACES_REQUEST), Ok(Scan::default()));
}

#[test]
fn malformed_ids_are_flagged_not_refused() {
    let cases: [fn(&mut Span); 5] = [
        |s| s.trace_id = vec![1; 15],
        |s| s.trace_id = vec![0; 16],
        |s| s.span_id.clear(),
        |s| s.parent_span_id = vec![1; 7],
        |s| s.parent_span_id = vec![0; 8],
    ];
    for change in cases {
        let mut request = traces();
        change(&mut request.resource_spans[0].scope_spans[0].spans[1]);
        let scanned = scan(&request.encode_to_vec(), &TRACES_REQUEST).expect("accepted");
        assert_eq!((scanned.items, scanned.invalid_ids), (3, true));
    }
    let mut request = logs();
    request.resource_logs[0].scope_logs[0].log_records[1].span_id = vec![3; 9];
    assert_eq!(
        scan(&request.encode_to_vec(), &LOGS_REQUEST),
        Ok(Scan {
            items: 2,
            invalid_ids: true,
            trace_ids_elsewhere: false,
        })
    );
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    match rng.below(5) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        1 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        2 => bytes.truncate(rng.below(bytes.len() + 1)),
        3 => {
            let i = rng.below(bytes.len() + 1);
            bytes.insert(i, rng.next() as u8);
        }
        _ if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes.remove(i);
        }
        _ => bytes.push(rng.next() as u8),
    }
}

/// For many random corruptions of valid requests, the scanner and prost agree
/// on accept/reject, and on the item count when both accept.
#[test]
fn accepts_exactly_what_prost_accepts() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = [
        (traces().encode_to_vec(), 0),
        (metrics().encode_to_vec(), 1),
        (logs().encode_to_vec(), 2),
    ];
    let mut both_accepted = 0;
    for round in 0..30_000 {
        let (seed, signal) = &seeds[round % 3];
        let mut bytes = seed.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut bytes);
        }
        let (prost_count, scanned) = match signal {
            0 => (
                ExportTraceServiceRequest::decode(bytes.as_slice()).map(|r| {
                    r.resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum::<usize>()
                }),
                scan(&bytes, &TRACES_REQUEST),
            ),
            1 => (
                ExportMetricsServiceRequest::decode(bytes.as_slice()).map(|r| {
                    r.resource_metrics
                        .iter()
                        .flat_map(|r| &r.scope_metrics)
                        .flat_map(|s| &s.metrics)
                        .map(crate::pdata::metrics::data_point_count)
                        .sum::<usize>()
                }),
                scan(&bytes, &METRICS_REQUEST),
            ),
            _ => (
                ExportLogsServiceRequest::decode(bytes.as_slice()).map(|r| {
                    r.resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .map(|s| s.log_records.len())
                        .sum::<usize>()
                }),
                scan(&bytes, &LOGS_REQUEST),
            ),
        };
        match (&prost_count, &scanned) {
            (Ok(count), Ok(found)) => {
                assert_eq!(
                    *count, found.items,
                    "round {round}: item count for {bytes:02x?}"
                );
                both_accepted += 1;
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "round {round}: prost {prost_count:?} vs scanner {scanned:?} for {bytes:02x?}"
            ),
        }
    }
    assert!(
        both_accepted > 1000,
        "the corpus exercises accepted inputs too ({both_accepted})"
    );
}

fn nested(depth: usize) -> ExportLogsServiceRequest {
    let mut value = AnyValue {
        value: Some(Value::StringValue("leaf".into())),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let mut request = logs();
    request.resource_logs[0].scope_logs[0].log_records[0].body = Some(value);
    request
}

#[test]
fn nesting_limit_matches_prost_at_the_boundary() {
    for depth in 40..52 {
        let bytes = nested(depth).encode_to_vec();
        let prost_ok = ExportLogsServiceRequest::decode(bytes.as_slice()).is_ok();
        assert_eq!(
            scan(&bytes, &LOGS_REQUEST).is_ok(),
            prost_ok,
            "depth {depth}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_without_deep_recursion() {
    // Built by hand: a 10,000-deep ArrayValue chain (prost would overflow encoding it).
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        let mut array = vec![0x0a]; // ArrayValue.values (1, LEN)
        push_len_prefixed(&mut array, &inner);
        let mut any = vec![0x2a]; // AnyValue.array_value (5, LEN)
        push_len_prefixed(&mut any, &array);
        inner = any;
    }
    let mut record = vec![0x2a]; // LogRecord.body (5, LEN)
    push_len_prefixed(&mut record, &inner);
    let mut scope = vec![0x12];
    push_len_prefixed(&mut scope, &record);
    let mut resource = vec![0x12];
    push_len_prefixed(&mut resource, &scope);
    let mut request = vec![0x0a];
    push_len_prefixed(&mut request, &resource);
    let result = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || scan(&request, &LOGS_REQUEST))
        .expect("thread")
        .join()
        .expect("no stack overflow");
    assert_eq!(result, Err(WireError("recursion limit reached")));
}

fn push_len_prefixed(out: &mut Vec<u8>, body: &[u8]) {
    let mut len = body.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(body);
}

#[test]
fn invalid_utf8_in_a_string_field_is_refused() {
    let mut request = traces();
    request.resource_spans[0].scope_spans[0].spans[0].name = "NAME".into();
    let mut bytes = request.encode_to_vec();
    let at = bytes
        .windows(4)
        .position(|w| w == b"NAME")
        .expect("name bytes");
    bytes[at] = 0xff;
    assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err());
    assert!(scan(&bytes, &TRACES_REQUEST).is_err());
}

/// Wraps the fields of one span in a request, scans it, and checks that
/// prost agrees on accepting it.
fn scan_span(span_fields: &[u8]) -> Result<Scan, WireError> {
    let mut scope_spans = vec![0x12]; // ScopeSpans.spans (2, LEN)
    push_len_prefixed(&mut scope_spans, span_fields);
    let mut resource_spans = vec![0x12]; // ResourceSpans.scope_spans (2, LEN)
    push_len_prefixed(&mut resource_spans, &scope_spans);
    let mut request = vec![0x0a]; // resource_spans (1, LEN)
    push_len_prefixed(&mut request, &resource_spans);
    let scanned = scan(&request, &TRACES_REQUEST);
    assert_eq!(
        scanned.is_ok(),
        ExportTraceServiceRequest::decode(request.as_slice()).is_ok(),
        "prost disagrees on {span_fields:02x?}: {scanned:?}"
    );
    scanned
}

/// A span's trace ID (1) and span ID (2), valid.
fn span_ids() -> Vec<u8> {
    let mut fields = vec![0x0a, 16];
    fields.extend([1; 16]);
    fields.extend([0x12, 8]);
    fields.extend([2; 8]);
    fields
}

#[test]
fn keys_outside_the_one_byte_table_take_the_general_path() {
    let one_span = Ok(Scan {
        items: 1,
        invalid_ids: false,
        trace_ids_elsewhere: false,
    });
    // A known tag in a two-byte (non-minimal) key: name (5, LEN).
    let mut fields = span_ids();
    fields.extend([0xaa, 0x00, 1, b'x']);
    assert_eq!(scan_span(&fields), one_span);
    // A known tag in a two-byte key with the wrong wire type.
    let mut fields = span_ids();
    fields.extend([0xa8, 0x00, 1]);
    assert_eq!(scan_span(&fields), Err(WireError("invalid wire type")));
    // Wrong wire types in one-byte keys: name as a varint, kind as LEN, the
    // trace ID as fixed32.
    for wrong in [&[0x28, 1][..], &[0x32, 0], &[0x0d, 1, 2, 3, 4]] {
        let mut fields = span_ids();
        fields.extend(wrong);
        assert_eq!(scan_span(&fields), Err(WireError("invalid wire type")));
    }
    // An unknown tag in a one-byte key (Status has no field 1) is skipped;
    // tag 0 and an end-group key are refused.
    let mut fields = span_ids();
    fields.extend([0x7a, 2, 0x08, 5]);
    assert_eq!(scan_span(&fields), one_span);
    for bad in [&[0x02, 0][..], &[0x2c]] {
        let mut fields = span_ids();
        fields.extend(bad);
        assert!(scan_span(&fields).is_err(), "{bad:02x?}");
    }
    // The last occurrence of an ID still wins when it comes in a long key.
    let mut fields = span_ids();
    fields.extend([0x92, 0x00, 8]);
    fields.extend([0; 8]);
    assert_eq!(
        scan_span(&fields),
        Ok(Scan {
            items: 1,
            invalid_ids: true,
            trace_ids_elsewhere: false,
        })
    );
}

/// Scans a span with one attribute `k` whose `AnyValue` is `any_value`
/// (checking that prost agrees).
fn scan_attribute(any_value: &[u8]) -> Result<Scan, WireError> {
    let mut key_value = vec![0x0a, 1, b'k', 0x12]; // key, then value (2, LEN)
    push_len_prefixed(&mut key_value, any_value);
    let mut fields = span_ids();
    fields.push(0x4a); // Span.attributes (9, LEN)
    push_len_prefixed(&mut fields, &key_value);
    scan_span(&fields)
}

#[test]
fn string_attribute_values_are_checked_like_any_message() {
    let one_span = Ok(Scan {
        items: 1,
        invalid_ids: false,
        trace_ids_elsewhere: false,
    });
    let utf8_error = Err(WireError("invalid string value: data is not UTF-8 encoded"));
    // The short form: string_value (1, LEN) alone.
    assert_eq!(scan_attribute(&[0x0a, 2, b'o', b'k']), one_span);
    assert_eq!(scan_attribute(&[0x0a, 0]), one_span);
    assert_eq!(scan_attribute(&[0x0a, 2, 0xc3, 0xa9]), one_span);
    assert_eq!(scan_attribute(&[0x0a, 2, b'o', 0xff]), utf8_error);
    assert_eq!(scan_attribute(&[0x0a, 1, 0xc3]), utf8_error);
    // Not the short form: a long string, a two-byte key, another field
    // after it, a length past the end or short of it.
    let mut long = vec![0x0a, 0x80, 0x01];
    long.extend([b'a'; 128]);
    assert_eq!(scan_attribute(&long), one_span);
    long[100] = 0xff;
    assert_eq!(scan_attribute(&long), utf8_error);
    assert_eq!(scan_attribute(&[0x8a, 0x00, 1, b'a']), one_span);
    assert_eq!(scan_attribute(&[0x8a, 0x00, 1, 0xff]), utf8_error);
    assert_eq!(scan_attribute(&[0x0a, 1, b'a', 0x10, 1]), one_span);
    assert_eq!(scan_attribute(&[0x0a, 1, 0xff, 0x10, 1]), utf8_error);
    assert!(scan_attribute(&[0x0a, 3, b'a', b'b']).is_err());
    assert!(scan_attribute(&[0x0a, 1, b'a', b'b']).is_err());
    // Other one-byte LEN fields of AnyValue are not strings: bytes_value
    // (7) need not be UTF-8, array_value (5) must hold AnyValues.
    assert_eq!(scan_attribute(&[0x3a, 1, 0xff]), one_span);
    assert_eq!(
        scan_attribute(&[0x2a, 1, 0xff]),
        Err(WireError("buffer underflow"))
    );
    // A string value with the wrong wire type.
    assert_eq!(
        scan_attribute(&[0x0d, 1, 0, 0, 0]),
        Err(WireError("invalid wire type"))
    );
}

#[test]
fn short_ascii_check_sees_every_byte() {
    for len in 0..=24 {
        let ascii = vec![b'a'; len];
        assert!(is_ascii(&ascii), "len {len}");
        for at in 0..len {
            let mut high = ascii.clone();
            high[at] = 0x80;
            assert!(!is_ascii(&high), "len {len}, high byte at {at}");
        }
    }
}

#[test]
fn attributes_are_checked_like_any_message() {
    let one_span = Ok(Scan {
        items: 1,
        invalid_ids: false,
        trace_ids_elsewhere: false,
    });
    let scan_key_values = |key_values: &[&[u8]]| {
        let mut fields = span_ids();
        for key_value in key_values {
            fields.push(0x4a); // Span.attributes (9, LEN)
            push_len_prefixed(&mut fields, key_value);
        }
        scan_span(&fields)
    };
    // Key and string value, in either order, repeated, or either alone.
    let value = [0x12, 3, 0x0a, 1, b'v'];
    let key = [0x0a, 1, b'k'];
    assert_eq!(scan_key_values(&[&[&key[..], &value].concat()]), one_span);
    assert_eq!(scan_key_values(&[&[&value[..], &key].concat()]), one_span);
    assert_eq!(
        scan_key_values(&[&[&key[..], &key, &value, &value].concat()]),
        one_span
    );
    assert_eq!(scan_key_values(&[&key, &value, &[]]), one_span);
    // A key that is not UTF-8, in front of a string value or another one.
    let bad_key = [0x0a, 1, 0xff];
    let utf8_error = Err(WireError("invalid string value: data is not UTF-8 encoded"));
    assert_eq!(
        scan_key_values(&[&[&bad_key[..], &value].concat()]),
        utf8_error
    );
    assert_eq!(
        scan_key_values(&[&[&bad_key[..], &[0x12, 2, 0x10, 1][..]].concat()]),
        utf8_error
    );
    // Fields the attribute shape does not cover: an int value, KeyValue's
    // field 3 (a varint) with the wrong wire type and with its own, an
    // unknown field, a length past the end of the KeyValue or the AnyValue.
    assert_eq!(
        scan_key_values(&[&[&key[..], &[0x12, 2, 0x10, 1][..]].concat()]),
        one_span
    );
    assert_eq!(
        scan_key_values(&[&[&key[..], &value, &[0x1a, 0]].concat()]),
        Err(WireError("invalid wire type"))
    );
    assert_eq!(
        scan_key_values(&[&[&key[..], &value, &[0x18, 1]].concat()]),
        one_span
    );
    assert_eq!(
        scan_key_values(&[&[&key[..], &[0x7a, 0][..]].concat()]),
        one_span
    );
    assert!(scan_key_values(&[&[&key[..], &[0x12, 9, 0x0a, 1, b'v'][..]].concat()]).is_err());
    assert!(scan_key_values(&[&[&key[..], &[0x12, 3, 0x0a, 2, b'v'][..]].concat()]).is_err());
}

#[test]
fn spans_whose_trace_id_is_their_one_first_field_are_told_apart() {
    let elsewhere = |fields: &[u8]| scan_span(fields).expect("accepted").trace_ids_elsewhere;
    // What serializers write: the trace ID first, once.
    assert!(!elsewhere(&span_ids()));
    assert!(
        !scan(&traces().encode_to_vec(), &TRACES_REQUEST)
            .expect("accepted")
            .trace_ids_elsewhere
    );
    // A second trace ID later in the span (the last one wins).
    let mut fields = span_ids();
    fields.extend([0x0a, 16]);
    fields.extend([9; 16]);
    assert!(elsewhere(&fields));
    // The trace ID after another field.
    let mut fields = vec![0x12, 8];
    fields.extend([2; 8]);
    fields.extend([0x0a, 16]);
    fields.extend([1; 16]);
    assert!(elsewhere(&fields));
    // First, but in a two-byte key.
    let mut fields = vec![0x8a, 0x00, 16];
    fields.extend([1; 16]);
    fields.extend([0x12, 8]);
    fields.extend([2; 8]);
    assert!(elsewhere(&fields));
    // One span of many is enough.
    let mut request = traces();
    let span = &mut request.resource_spans[0].scope_spans[0].spans[1];
    span.trace_id = vec![1; 15];
    assert!(
        scan(&request.encode_to_vec(), &TRACES_REQUEST)
            .expect("accepted")
            .trace_ids_elsewhere
    );
}
