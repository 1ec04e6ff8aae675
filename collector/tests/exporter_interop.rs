//! Our `otlp` and `otlphttp` exporters against an independent peer:
//! `tests/py/otlp_grpc_server.py`, a Python server built on grpcio with the
//! services generated in the `opentelemetry-proto` package (gRPC, 4 MiB
//! receive limit like the OllyScale receiver) and on `http.server` with the
//! same package's message classes (OTLP/HTTP). It checks that every request
//! decodes as OTLP and reports what it got; here we check that everything an
//! `agent-collector` accepted arrived intact, once.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use prost::Message;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use support::{Collector, eventually, http_request, make_traces, python};

/// The Python OTLP server, stopped with SIGTERM when dropped.
struct PyServer {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    summary: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyServer {
    fn start(extra: &[&str]) -> PyServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = dir.path().join("summary.json");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/otlp_grpc_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg("--summary")
            .arg(&summary)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python OTLP server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        // The script prints its ports once listening, or exits (EOF) on error.
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the ports");
        let ports: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("no ports from the Python server ({e}): {line:?}"));
        let port = |key: &str| {
            ports[key]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("port")
        };
        PyServer {
            grpc_port: port("grpc_port"),
            http_port: port("http_port"),
            child,
            summary,
            _dir: dir,
        }
    }

    fn summary(&self) -> Json {
        std::fs::read_to_string(&self.summary)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Json::Null)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

fn agent(exporters: &str, names: &str) -> Collector {
    Collector::start(
        support::binary("agent-collector"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 10ms
exporters:
{exporters}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: {names}
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: {names}
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: {names}
"#
        ),
    )
}

fn post(agent: &Collector, path: &str, body: &[u8]) {
    let response = http_request(
        agent.address("otlp", "http"),
        "POST",
        path,
        &[("Content-Type", "application/x-protobuf")],
        body,
    );
    assert_eq!(response.status, 200, "{path}");
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn span_ids(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| to_hex(&s.span_id))
        .collect()
}

fn trace_ids(request: &ExportTraceServiceRequest) -> HashSet<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| to_hex(&s.trace_id))
        .collect()
}

fn metrics_request() -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "interop.gauge".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..3)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(i)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..4)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("interop {i}"))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// How many times each span id arrived.
fn arrivals(summary: &Json) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in summary["traces"]["span_ids"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(id) = id.as_str() {
            *counts.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn strings(value: &Json) -> HashSet<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn otlp_grpc_delivers_everything_intact_to_grpc_python() {
    // The first two Export calls are answered UNAVAILABLE: retried.
    let server = PyServer::start(&["--grpc-unavailable-first", "2"]);
    let agent = agent(
        &format!(
            "  otlp:\n    endpoint: 127.0.0.1:{}\n    tls: {{insecure: true}}\n    retry_on_failure: {{initial_interval: 50ms, max_interval: 100ms}}",
            server.grpc_port
        ),
        "[otlp]",
    );

    let mut sent_spans = Vec::new();
    let mut sent_traces = HashSet::new();
    for seed in 1..=20u8 {
        let request = make_traces(seed, 5, 10, "interop-grpc");
        sent_spans.extend(span_ids(&request));
        sent_traces.extend(trace_ids(&request));
        post(&agent, "/v1/traces", &request.encode_to_vec());
    }
    // One request above grpc-python's 4 MiB limit: the exporter splits it.
    let big = make_traces(200, 300, 200, "interop-grpc-big");
    let big_bytes = big.encode_to_vec();
    assert!(
        big_bytes.len() > 4 * 1024 * 1024 + 512 * 1024,
        "{}",
        big_bytes.len()
    );
    sent_spans.extend(span_ids(&big));
    sent_traces.extend(trace_ids(&big));
    post(&agent, "/v1/traces", &big_bytes);
    post(&agent, "/v1/metrics", &metrics_request().encode_to_vec());
    post(&agent, "/v1/logs", &logs_request().encode_to_vec());

    let summary = eventually(
        "every span, point and record at the Python server",
        || server.summary(),
        |s| {
            s["traces"]["spans"].as_u64() == Some(sent_spans.len() as u64)
                && s["metrics"]["data_points"] == 3
                && s["logs"]["log_records"] == 4
        },
    );
    assert_eq!(
        summary["errors"],
        serde_json::json!([]),
        "all decoded as OTLP"
    );
    assert_eq!(summary["refused_unavailable"]["grpc"], 2);
    let got = arrivals(&summary);
    assert_eq!(got.len(), sent_spans.len(), "every span id");
    assert!(got.values().all(|n| *n == 1), "each exactly once");
    assert!(sent_spans.iter().all(|id| got.contains_key(id)));
    assert_eq!(strings(&summary["traces"]["trace_ids"]), sent_traces);
    assert!(
        summary["max_request_bytes"].as_u64().unwrap_or(u64::MAX) <= 4 * 1024 * 1024,
        "{}",
        summary["max_request_bytes"]
    );
    assert_eq!(
        summary["metrics"]["names"],
        serde_json::json!(["interop.gauge"])
    );
    assert_eq!(
        strings(&summary["logs"]["bodies"]),
        (0..4).map(|i| format!("interop {i}")).collect()
    );
    assert_eq!(
        agent.metric(
            "otelcol_exporter_send_failed_spans_total",
            &[("exporter", "otlp")]
        ),
        0.0
    );
}

#[test]
fn otlphttp_delivers_protobuf_and_json_to_a_python_http_server() {
    // The first request is answered 503 with Retry-After: 1.
    let server = PyServer::start(&["--http-unavailable-first", "1"]);
    let endpoint = format!("http://127.0.0.1:{}", server.http_port);
    let agent = agent(
        &format!(
            "  otlphttp/proto:\n    endpoint: {endpoint}\n  otlp_http/json:\n    endpoint: {endpoint}\n    encoding: json\n    compression: none"
        ),
        "[otlphttp/proto, otlp_http/json]",
    );

    let mut sent_spans = Vec::new();
    for seed in 1..=10u8 {
        let request = make_traces(seed, 3, 4, "interop-http");
        sent_spans.extend(span_ids(&request));
        post(&agent, "/v1/traces", &request.encode_to_vec());
    }
    post(&agent, "/v1/metrics", &metrics_request().encode_to_vec());
    post(&agent, "/v1/logs", &logs_request().encode_to_vec());

    // Each exporter delivers everything: every item twice in all.
    let summary = eventually(
        "everything from both exporters at the Python server",
        || server.summary(),
        |s| {
            s["traces"]["spans"].as_u64() == Some(2 * sent_spans.len() as u64)
                && s["metrics"]["data_points"] == 6
                && s["logs"]["log_records"] == 8
        },
    );
    assert_eq!(
        summary["errors"],
        serde_json::json!([]),
        "all decoded as OTLP"
    );
    assert_eq!(summary["refused_unavailable"]["http"], 1);
    let got = arrivals(&summary);
    assert_eq!(got.len(), sent_spans.len());
    assert!(got.values().all(|n| *n == 2), "once per exporter");
    assert_eq!(
        strings(&summary["content_types"]),
        ["application/x-protobuf", "application/json"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        strings(&summary["content_encodings"]),
        ["gzip", "identity"].map(String::from).into()
    );
    for exporter in ["otlphttp/proto", "otlp_http/json"] {
        // The exporter counts a send once it has read the server's answer,
        // which may be just after the server wrote its summary.
        eventually(
            &format!("{exporter} counts every span as sent"),
            || {
                agent.metric(
                    "otelcol_exporter_sent_spans_total",
                    &[("exporter", exporter)],
                )
            },
            |sent| *sent == sent_spans.len() as f64,
        );
        assert_eq!(
            agent.metric(
                "otelcol_exporter_send_failed_spans_total",
                &[("exporter", exporter)]
            ),
            0.0
        );
    }
}
