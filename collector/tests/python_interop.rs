//! The OTLP receiver against a real client: the OpenTelemetry Python SDK
//! (`tests/py/send_otlp.py`) sends a small trace, metrics and log records over
//! OTLP/gRPC, OTLP/HTTP protobuf and OTLP/HTTP JSON; what the `file` exporter
//! wrote must be the same data, field for field, as what the SDK encoded.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, span::SpanKind, status::StatusCode,
};
use prost::Message;
use serde_json::Value as Json;
use std::process::Command;
use support::{Collector, FileContents, eventually, read_file_exporter};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 10ms
exporters:
  file:
    path: {dir}/out.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"#;

/// What the script says it sent: the requests as the SDK encoded them, plus a summary.
struct Sent {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    summary: Json,
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_all<M: Message + Default>(summary: &Json, signal: &str) -> Vec<M> {
    summary["sent"][signal]
        .as_array()
        .unwrap_or_else(|| panic!("no sent.{signal} in the script output"))
        .iter()
        .map(|h| {
            M::decode(unhex(h.as_str().expect("hex string")).as_slice())
                .expect("the SDK's protobuf")
        })
        .collect()
}

/// Runs `py/send_otlp.py` with the test venv's interpreter.
fn send_with_python_sdk(protocol: &str, endpoint: &str) -> Sent {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/send_otlp.py");
    let mut command = Command::new(support::python());
    command
        .arg(script)
        .args(["--protocol", protocol, "--endpoint", endpoint]);
    // The SDK reads OTEL_* variables (endpoints, resource, temporality): keep the test's own settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("run the Python SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "send_otlp.py --protocol {protocol} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the script:\n{stdout}\n{stderr}"));
    let summary: Json = serde_json::from_str(line).expect("script output is JSON");
    Sent {
        traces: decode_all(&summary, "traces"),
        metrics: decode_all(&summary, "metrics"),
        logs: decode_all(&summary, "logs"),
        summary,
    }
}

// ----------------------------------------------------------- flattening
//
// Requests may be regrouped on the way (batching merges them, resources and
// scopes may be split or joined), so both sides are compared as sorted lists of
// single-item requests: one resource, one scope, one span / data point / log
// record, each carrying its own resource and scope.

fn flat_spans(requests: &[ExportTraceServiceRequest]) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    for rs in requests.iter().flat_map(|r| &r.resource_spans) {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push(ResourceSpans {
                    resource: rs.resource.clone(),
                    schema_url: rs.schema_url.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: ss.scope.clone(),
                        schema_url: ss.schema_url.clone(),
                        spans: vec![span.clone()],
                    }],
                });
            }
        }
    }
    sort_by_encoding(out)
}

/// `metric` with only its `i`-th data point.
fn single_point(metric: &Metric, i: usize) -> Metric {
    let mut one = metric.clone();
    match &mut one.data {
        Some(Data::Gauge(g)) => g.data_points = vec![g.data_points[i].clone()],
        Some(Data::Sum(s)) => s.data_points = vec![s.data_points[i].clone()],
        Some(Data::Histogram(h)) => h.data_points = vec![h.data_points[i].clone()],
        Some(Data::ExponentialHistogram(h)) => h.data_points = vec![h.data_points[i].clone()],
        Some(Data::Summary(s)) => s.data_points = vec![s.data_points[i].clone()],
        None => {}
    }
    one
}

fn point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn flat_points(requests: &[ExportMetricsServiceRequest]) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    for rm in requests.iter().flat_map(|r| &r.resource_metrics) {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                for i in 0..point_count(metric) {
                    out.push(ResourceMetrics {
                        resource: rm.resource.clone(),
                        schema_url: rm.schema_url.clone(),
                        scope_metrics: vec![ScopeMetrics {
                            scope: sm.scope.clone(),
                            schema_url: sm.schema_url.clone(),
                            metrics: vec![single_point(metric, i)],
                        }],
                    });
                }
            }
        }
    }
    sort_by_encoding(out)
}

fn flat_logs(requests: &[ExportLogsServiceRequest]) -> Vec<ResourceLogs> {
    let mut out = Vec::new();
    for rl in requests.iter().flat_map(|r| &r.resource_logs) {
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                out.push(ResourceLogs {
                    resource: rl.resource.clone(),
                    schema_url: rl.schema_url.clone(),
                    scope_logs: vec![ScopeLogs {
                        scope: sl.scope.clone(),
                        schema_url: sl.schema_url.clone(),
                        log_records: vec![record.clone()],
                    }],
                });
            }
        }
    }
    sort_by_encoding(out)
}

fn sort_by_encoding<M: Message>(items: Vec<M>) -> Vec<M> {
    let mut keyed: Vec<(Vec<u8>, M)> = items.into_iter().map(|m| (m.encode_to_vec(), m)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, m)| m).collect()
}

/// Asserts two flattened lists are equal, naming the first differing item.
fn assert_same<M: Message + PartialEq + std::fmt::Debug>(what: &str, sent: &[M], written: &[M]) {
    assert_eq!(
        sent.len(),
        written.len(),
        "{what}: the SDK sent {} items, the file holds {}",
        sent.len(),
        written.len()
    );
    let unmatched: Vec<&M> = written.iter().filter(|w| !sent.contains(w)).collect();
    if let Some(first) = unmatched.first() {
        let sent_only: Vec<&M> = sent.iter().filter(|s| !written.contains(s)).collect();
        panic!(
            "{what}: {} items differ from what the SDK sent.\nfirst written item not sent:\n{first:#?}\n\nsent items not written:\n{sent_only:#?}",
            unmatched.len()
        );
    }
    assert_eq!(sent, written, "{what}: same items, different multiplicity");
}

// ---------------------------------------------------------- explicit checks

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> &'a Value {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .unwrap_or_else(|| panic!("no attribute {key} in {attributes:#?}"))
}

fn string(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn array(values: Vec<Value>) -> Value {
    Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
        values: values
            .into_iter()
            .map(|v| AnyValue { value: Some(v) })
            .collect(),
    })
}

fn span_named<'a>(file: &'a FileContents, name: &str) -> &'a Span {
    file.spans()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} written"))
}

fn check_traces(file: &FileContents, summary: &Json) {
    let ids = |name: &str, field: &str| {
        summary["spans"][name][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        file.span_count() as u64,
        summary["span_count"].as_u64().expect("span_count")
    );

    for rs in file.traces.iter().flat_map(|r| &r.resource_spans) {
        let resource = rs.resource.as_ref().expect("resource");
        assert_eq!(
            attr(&resource.attributes, "service.name"),
            &string("interop-python")
        );
        assert_eq!(
            attr(&resource.attributes, "service.version"),
            &string("1.4.2")
        );
        assert_eq!(
            attr(&resource.attributes, "interop.int"),
            &Value::IntValue(42)
        );
        assert_eq!(
            attr(&resource.attributes, "interop.bool"),
            &Value::BoolValue(true)
        );
        assert_eq!(
            attr(&resource.attributes, "interop.double"),
            &Value::DoubleValue(0.25)
        );
        assert_eq!(
            attr(&resource.attributes, "interop.list"),
            &array(vec![string("a"), string("b"), string("c")])
        );
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().expect("scope");
            assert_eq!(
                (scope.name.as_str(), scope.version.as_str()),
                ("interop.tracer", "2.7.1")
            );
            assert_eq!(attr(&scope.attributes, "scope.kind"), &string("tracer"));
            assert_eq!(ss.schema_url, "https://opentelemetry.io/schemas/1.26.0");
        }
    }

    for name in [
        "enqueue job",
        "GET /checkout",
        "SELECT orders",
        "charge card",
    ] {
        let span = span_named(file, name);
        assert_eq!(
            hex(&span.trace_id),
            ids(name, "trace_id"),
            "{name}: trace ID"
        );
        assert_eq!(hex(&span.span_id), ids(name, "span_id"), "{name}: span ID");
        assert_eq!(
            hex(&span.parent_span_id),
            ids(name, "parent_span_id"),
            "{name}: parent span ID"
        );
        assert!(
            span.start_time_unix_nano > 0 && span.end_time_unix_nano >= span.start_time_unix_nano,
            "{name}: times"
        );
    }

    let root = span_named(file, "GET /checkout");
    assert_eq!(
        hex(&root.trace_id),
        summary["trace_id"].as_str().expect("trace_id")
    );
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert!(root.parent_span_id.is_empty());
    let a = &root.attributes;
    assert_eq!(attr(a, "http.request.method"), &string("GET"));
    assert_eq!(attr(a, "http.response.status_code"), &Value::IntValue(200));
    assert_eq!(attr(a, "interop.negative"), &Value::IntValue(-7));
    assert_eq!(attr(a, "interop.big"), &Value::IntValue((1i64 << 62) + 1));
    assert_eq!(attr(a, "interop.ratio"), &Value::DoubleValue(0.1 + 0.2));
    assert_eq!(attr(a, "interop.sampled"), &Value::BoolValue(true));
    assert_eq!(
        attr(a, "interop.unicode"),
        &string("h\u{e9}llo w\u{f6}rld \u{2713} \u{65e5}\u{672c}")
    );
    assert_eq!(
        attr(a, "interop.strings"),
        &array(vec![string("a"), string("b")])
    );
    assert_eq!(
        attr(a, "interop.ints"),
        &array(vec![
            Value::IntValue(1),
            Value::IntValue(2),
            Value::IntValue(3)
        ])
    );
    assert_eq!(
        attr(a, "interop.doubles"),
        &array(vec![Value::DoubleValue(1.5), Value::DoubleValue(-2.25)])
    );
    assert_eq!(
        attr(a, "interop.bools"),
        &array(vec![Value::BoolValue(true), Value::BoolValue(false)])
    );
    assert_eq!(root.events.len(), 1);
    let event = &root.events[0];
    assert_eq!(event.name, "request.received");
    assert!(event.time_unix_nano >= root.start_time_unix_nano);
    assert_eq!(attr(&event.attributes, "size"), &Value::IntValue(512));
    assert_eq!(attr(&event.attributes, "gzip"), &Value::BoolValue(false));
    assert_eq!(attr(&event.attributes, "ratio"), &Value::DoubleValue(0.5));
    assert_eq!(attr(&event.attributes, "client"), &string("curl"));
    assert_eq!(
        attr(&event.attributes, "tags"),
        &array(vec![string("x"), string("y")])
    );

    let client = span_named(file, "SELECT orders");
    assert_eq!(client.kind, SpanKind::Client as i32);
    assert_eq!(client.parent_span_id, root.span_id);
    assert_eq!(client.trace_id, root.trace_id);
    assert_eq!(client.events.len(), 1);
    assert_eq!(client.events[0].name, "rows.fetched");
    assert_eq!(
        attr(&client.events[0].attributes, "rows"),
        &Value::IntValue(17)
    );
    assert_eq!(client.links.len(), 1);
    let link = &client.links[0];
    assert_eq!(hex(&link.trace_id), ids("enqueue job", "trace_id"));
    assert_eq!(hex(&link.span_id), ids("enqueue job", "span_id"));
    // The Python SDK's encoder leaves a link's trace_state out; it does set the flags.
    assert_eq!(
        link.flags & 0x100,
        0x100,
        "link flags carry HAS_IS_REMOTE: {:#x}",
        link.flags
    );
    assert_eq!(attr(&link.attributes, "link.kind"), &string("follows_from"));
    assert_eq!(attr(&link.attributes, "link.n"), &Value::IntValue(3));

    let failing = span_named(file, "charge card");
    assert_eq!(failing.kind, SpanKind::Internal as i32);
    assert_eq!(failing.parent_span_id, root.span_id);
    let status = failing.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "payment declined");
    let exception = failing
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    assert_eq!(
        attr(&exception.attributes, "exception.type"),
        &string("ValueError")
    );
    assert_eq!(
        attr(&exception.attributes, "exception.message"),
        &string("card expired")
    );

    let producer = span_named(file, "enqueue job");
    assert_eq!(producer.kind, SpanKind::Producer as i32);
    assert_eq!(
        hex(&producer.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "continues the remote trace"
    );
    assert_eq!(hex(&producer.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(producer.trace_state, "vendor=v1,other=x-y");
}

fn metric_points<'a>(file: &'a FileContents, name: &str) -> Vec<&'a Metric> {
    let found: Vec<&Metric> = file
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .collect();
    assert!(!found.is_empty(), "no metric {name} written");
    found
}

fn int_value(point: &NumberDataPoint) -> Option<i64> {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => Some(v),
        _ => None,
    }
}

fn check_metrics(file: &FileContents, summary: &Json) {
    for sm in file
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
    {
        let scope = sm.scope.as_ref().expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("interop.meter", "3.1.4")
        );
    }
    let expected = &summary["metrics"];

    for metric in metric_points(file, "interop.requests") {
        assert_eq!(metric.unit, "{request}");
        assert_eq!(metric.description, "Requests handled.");
        let Some(Data::Sum(sum)) = &metric.data else {
            panic!("interop.requests is not a sum: {metric:#?}")
        };
        assert!(sum.is_monotonic);
        assert!(sum.aggregation_temporality != 0, "temporality set");
        for point in &sum.data_points {
            let Value::StringValue(route) = attr(&point.attributes, "route") else {
                panic!("route is a string")
            };
            assert_eq!(
                int_value(point),
                expected["interop.requests"]["by_route"][route].as_i64(),
                "requests for {route}"
            );
        }
    }

    for metric in metric_points(file, "interop.queue.depth") {
        let Some(Data::Sum(sum)) = &metric.data else {
            panic!("interop.queue.depth is not a sum: {metric:#?}")
        };
        assert!(!sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            int_value(&sum.data_points[0]),
            expected["interop.queue.depth"]["value"].as_i64()
        );
    }

    for metric in metric_points(file, "interop.latency") {
        assert_eq!(metric.unit, "ms");
        let Some(Data::Histogram(histogram)) = &metric.data else {
            panic!("interop.latency is not a histogram: {metric:#?}")
        };
        assert_eq!(histogram.data_points.len(), 1);
        let point = &histogram.data_points[0];
        let e = &expected["interop.latency"];
        assert_eq!(Some(point.count), e["count"].as_u64());
        assert_eq!(point.sum, e["sum"].as_f64());
        assert_eq!(point.min, e["min"].as_f64());
        assert_eq!(point.max, e["max"].as_f64());
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(attr(&point.attributes, "route"), &string("/checkout"));
    }

    for metric in metric_points(file, "interop.temperature") {
        assert_eq!(metric.unit, "Cel");
        let Some(Data::Gauge(gauge)) = &metric.data else {
            panic!("interop.temperature is not a gauge: {metric:#?}")
        };
        assert_eq!(gauge.data_points.len(), 1);
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(21.5))
        );
        assert_eq!(
            attr(&gauge.data_points[0].attributes, "room"),
            &string("lab")
        );
    }
}

fn check_logs(file: &FileContents, summary: &Json) {
    let records: Vec<_> = file
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    assert_eq!(records.len(), 2);
    for sl in file
        .logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
    {
        let scope = sl.scope.as_ref().expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("interop.logger", "0.9.0")
        );
    }
    let expected = &summary["logs"][0];
    let warn = records
        .iter()
        .find(|r| {
            r.body.as_ref().and_then(|b| b.value.as_ref())
                == Some(&string(expected["body"].as_str().expect("body")))
        })
        .expect("the WARN record");
    assert_eq!(
        i64::from(warn.severity_number),
        expected["severity_number"].as_i64().expect("severity")
    );
    assert_eq!(warn.severity_text, "WARN");
    assert_eq!(
        hex(&warn.trace_id),
        expected["trace_id"].as_str().expect("trace_id")
    );
    assert_eq!(
        hex(&warn.span_id),
        expected["span_id"].as_str().expect("span_id")
    );
    assert!(warn.time_unix_nano > 0 && warn.observed_time_unix_nano > 0);
    assert_eq!(attr(&warn.attributes, "order.id"), &Value::IntValue(1234));
    assert_eq!(
        attr(&warn.attributes, "retryable"),
        &Value::BoolValue(false)
    );
    assert_eq!(attr(&warn.attributes, "amount"), &Value::DoubleValue(99.95));
    assert_eq!(
        attr(&warn.attributes, "tags"),
        &array(vec![string("card"), string("eu")])
    );

    let info = records
        .iter()
        .find(|r| r.event_name == "checkout.completed")
        .expect("the event record");
    assert_eq!(
        i64::from(info.severity_number),
        summary["logs"][1]["severity_number"]
            .as_i64()
            .expect("severity")
    );
    let Some(Value::KvlistValue(body)) = info.body.as_ref().and_then(|b| b.value.as_ref()) else {
        panic!("map body: {info:#?}")
    };
    assert_eq!(attr(&body.values, "event"), &string("checkout"));
    assert_eq!(attr(&body.values, "items"), &Value::IntValue(3));
    let Value::KvlistValue(nested) = attr(&body.values, "nested") else {
        panic!("nested map")
    };
    assert_eq!(
        attr(&nested.values, "list"),
        &array(vec![
            Value::IntValue(1),
            string("two"),
            Value::DoubleValue(3.5),
            Value::BoolValue(true)
        ])
    );
    assert!(
        info.trace_id.is_empty() && info.span_id.is_empty(),
        "emitted outside any span"
    );
}

fn interop(protocol: &str) {
    let collector = Collector::start(support::binary("gateway-collector"), CONFIG);
    let (transport, other) = if protocol == "grpc" {
        ("grpc", "http")
    } else {
        ("http", "grpc")
    };
    let endpoint = format!("http://{}", collector.address("otlp", transport));
    let sent = send_with_python_sdk(protocol, &endpoint);

    let sent_spans = flat_spans(&sent.traces);
    let sent_points = flat_points(&sent.metrics);
    let sent_logs = flat_logs(&sent.logs);
    assert_eq!(
        sent_spans.len() as u64,
        sent.summary["span_count"].as_u64().expect("span_count"),
        "the script sent every span"
    );
    assert!(
        !sent_points.is_empty() && sent_logs.len() == 2,
        "the script sent metrics and logs"
    );
    println!(
        "{protocol}: the SDK sent {} spans, {} metric data points, {} log records in {}/{}/{} requests",
        sent_spans.len(),
        sent_points.len(),
        sent_logs.len(),
        sent.traces.len(),
        sent.metrics.len(),
        sent.logs.len()
    );

    let path = collector.path("out.json");
    let file = eventually(
        "everything the SDK sent in the file",
        || read_file_exporter(&path),
        |c| {
            c.span_count() >= sent_spans.len()
                && c.log_count() >= sent_logs.len()
                && flat_points(&c.metrics).len() >= sent_points.len()
        },
    );

    assert_same("spans", &sent_spans, &flat_spans(&file.traces));
    assert_same(
        "metric data points",
        &sent_points,
        &flat_points(&file.metrics),
    );
    assert_same("log records", &sent_logs, &flat_logs(&file.logs));
    check_traces(&file, &sent.summary);
    check_metrics(&file, &sent.summary);
    check_logs(&file, &sent.summary);

    let accepted =
        |name: &str, t: &str| collector.metric(name, &[("receiver", "otlp"), ("transport", t)]);
    assert_eq!(
        accepted("otelcol_receiver_accepted_spans_total", transport),
        sent_spans.len() as f64
    );
    assert_eq!(
        accepted("otelcol_receiver_accepted_log_records_total", transport),
        sent_logs.len() as f64
    );
    assert_eq!(
        accepted("otelcol_receiver_accepted_metric_points_total", transport),
        sent_points.len() as f64
    );
    assert_eq!(
        accepted("otelcol_receiver_accepted_spans_total", other),
        0.0
    );
    assert_eq!(
        accepted("otelcol_receiver_refused_spans_total", transport),
        0.0
    );
    assert_eq!(
        collector.metric("otelcol_receiver_refused_requests_total", &[]),
        0.0
    );
}

#[test]
fn python_sdk_over_grpc() {
    interop("grpc");
}

#[test]
fn python_sdk_over_http_protobuf() {
    interop("http/protobuf");
}

#[test]
fn python_sdk_over_http_json() {
    interop("http/json");
}
