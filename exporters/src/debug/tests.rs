//! Tests of the debug exporter: output formats on a captured writer.

use super::text::typed_value;
use super::*;
use crate::test_support::{ctx, logs, metrics, traces};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

/// A writer that keeps what it got.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

fn exporter(verbosity: Verbosity) -> (DebugExporter, Captured, CreateContext) {
    let captured = Captured::default();
    let ctx = ctx("debug");
    let config = DebugConfig {
        verbosity,
        use_internal_logger: false,
        ..DebugConfig::default()
    };
    let exporter = DebugExporter::new(
        &ctx,
        &config,
        Output::Writer(Mutex::new(Box::new(captured.clone()))),
    );
    (exporter, captured, ctx)
}

#[tokio::test]
async fn basic_writes_one_line_per_batch_with_counts() {
    let (exporter, out, ctx) = exporter(Verbosity::Basic);
    exporter.consume(Telemetry::new(traces(2))).await.unwrap();
    exporter.consume(Telemetry::new(metrics(3))).await.unwrap();
    exporter.consume(Telemetry::new(logs(1))).await.unwrap();
    assert_eq!(
        out.text(),
        "Traces {\"resource spans\": 1, \"spans\": 2}\n\
         Metrics {\"resource metrics\": 1, \"metrics\": 1, \"data points\": 3}\n\
         Logs {\"resource logs\": 1, \"log records\": 1}\n"
    );
    let sent = |name| ctx.host.metrics.value(name, &[("exporter", "debug")]);
    assert_eq!(sent("otelcol_exporter_sent_spans"), Some(2.0));
    assert_eq!(sent("otelcol_exporter_sent_metric_points"), Some(3.0));
    assert_eq!(sent("otelcol_exporter_sent_log_records"), Some(1.0));
}

#[tokio::test]
async fn normal_writes_one_line_per_item() {
    let (exporter, out, _) = exporter(Verbosity::Normal);
    exporter.consume(Telemetry::new(traces(2))).await.unwrap();
    exporter.consume(Telemetry::new(metrics(2))).await.unwrap();
    exporter.consume(Telemetry::new(logs(1))).await.unwrap();
    let text = out.text();
    let trace_id = "11".repeat(16);
    let expected = [
        "Traces {\"resource spans\": 1, \"spans\": 2}".to_string(),
        "ResourceSpans #0 service.name=checkout".into(),
        "ScopeSpans #0 test-scope@1.0".into(),
        format!("span-0 {trace_id} 0000000000000001 http.route=/pay"),
        format!("span-1 {trace_id} 0000000000000002 http.route=/pay"),
        "Metrics {\"resource metrics\": 1, \"metrics\": 1, \"data points\": 2}".into(),
        "ResourceMetrics #0 service.name=checkout".into(),
        "ScopeMetrics #0 test-scope@1.0".into(),
        "cpu.usage{cpu=0} 0.5".into(),
        "cpu.usage{cpu=1} 1.5".into(),
        "Logs {\"resource logs\": 1, \"log records\": 1}".into(),
        "ResourceLog #0 service.name=checkout".into(),
        "ScopeLogs #0 test-scope@1.0".into(),
        "hello 0 user=ann".into(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
}

#[tokio::test]
async fn detailed_writes_every_field() {
    let (exporter, out, _) = exporter(Verbosity::Detailed);
    exporter.consume(Telemetry::new(traces(1))).await.unwrap();
    exporter.consume(Telemetry::new(logs(1))).await.unwrap();
    let text = out.text();
    for needle in [
        "ResourceSpans #0",
        "Resource attributes:",
        "     -> service.name: Str(checkout)",
        "InstrumentationScope test-scope 1.0",
        "Span #0",
        &format!("    Trace ID       : {}", "11".repeat(16)),
        "    ID             : 0000000000000001",
        "    Name           : span-0",
        "    Kind           : Server",
        "    Start time     : 2023-11-14T22:13:20.000000000Z",
        "    End time       : 2023-11-14T22:13:20.500000000Z",
        "    Status code    : Unset",
        "Attributes:",
        "     -> http.route: Str(/pay)",
        "LogRecord #0",
        "SeverityText: INFO",
        "Body: Str(hello 0)",
        "     -> user: Str(ann)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn nested_values_are_rendered_and_depth_capped() {
    let mut value = AnyValue {
        value: Some(any_value::Value::IntValue(1)),
    };
    for _ in 0..40 {
        value = AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![value],
                },
            )),
        };
    }
    let text = typed_value(&value);
    assert!(
        text.starts_with("Slice([[[") && text.contains("..."),
        "{text}"
    );
}

#[test]
fn sampler_follows_zap() {
    let start = Instant::now();
    let mut sampler = Sampler::new(2, 3);
    let decisions: Vec<bool> = (0..8).map(|_| sampler.allow(start)).collect();
    assert_eq!(
        decisions,
        [true, true, false, false, true, false, false, true]
    );
    // A new second starts afresh.
    assert!(sampler.allow(start + Duration::from_secs(1)));
    let mut none_after = Sampler::new(1, 0);
    assert!(none_after.allow(start));
    assert!(!none_after.allow(start));
}

#[test]
fn config_defaults_and_keys() {
    let config: DebugConfig = serde_yaml_ng::from_str("verbosity: detailed").unwrap();
    assert_eq!(config.verbosity, Verbosity::Detailed);
    assert_eq!(config.sampling_initial, 2);
    assert!(config.use_internal_logger);
    assert!(serde_yaml_ng::from_str::<DebugConfig>("verbosity: loud").is_err());
}
