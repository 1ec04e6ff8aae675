//! Tests of the file exporter: formats round-trip, rotation, append.

use super::*;
use crate::test_support::{ctx, logs, metrics, trace_request, traces};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::path::Path;

fn config(path: &Path, format: FileFormat) -> FileConfig {
    FileConfig {
        path: path.to_string_lossy().into_owned(),
        format,
        ..FileConfig::default()
    }
}

fn far() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(30)
}

/// Splits `4-byte length + message` records.
fn frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        out.push(data[4..4 + len].to_vec());
        data = &data[4 + len..];
    }
    assert!(data.is_empty(), "trailing bytes");
    out
}

#[tokio::test]
async fn json_lines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let ctx = ctx("file");
    let exporter = FileExporter::new(&ctx, config(&path, FileFormat::Json));
    exporter.start().await.unwrap();
    exporter.consume(Telemetry::new(traces(3))).await.unwrap();
    exporter.consume(Telemetry::new(metrics(2))).await.unwrap();
    exporter.consume(Telemetry::new(logs(4))).await.unwrap();
    exporter.shutdown(far()).await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        json::decode_traces(lines[0].as_bytes()).unwrap(),
        trace_request(3)
    );
    let Payload::Metrics(m) = metrics(2) else {
        unreachable!()
    };
    assert_eq!(
        &json::decode_metrics(lines[1].as_bytes()).unwrap(),
        m.request()
    );
    let Payload::Logs(l) = logs(4) else {
        unreachable!()
    };
    assert_eq!(
        &json::decode_logs(lines[2].as_bytes()).unwrap(),
        l.request()
    );
    let value = |name| ctx.host.metrics.value(name, &[("exporter", "file")]);
    assert_eq!(value("otelcol_exporter_sent_spans"), Some(3.0));
    assert_eq!(value("otelcol_exporter_sent_metric_points"), Some(2.0));
    assert_eq!(value("otelcol_exporter_sent_log_records"), Some(4.0));
    // Shut down: new data is refused.
    assert!(exporter.consume(Telemetry::new(traces(1))).await.is_err());
}

#[tokio::test]
async fn proto_is_length_prefixed_original_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.binpb");
    let exporter = FileExporter::new(&ctx("file/proto"), config(&path, FileFormat::Proto));
    exporter.start().await.unwrap();
    for n in [1, 5] {
        exporter.consume(Telemetry::new(traces(n))).await.unwrap();
    }
    exporter.shutdown(far()).await.unwrap();
    let data = std::fs::read(&path).unwrap();
    let messages = frames(&data);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0], traces(1).to_protobuf().to_vec());
    assert_eq!(
        ExportTraceServiceRequest::decode(messages[1].as_slice()).unwrap(),
        trace_request(5)
    );
}

#[tokio::test]
async fn zstd_compresses_each_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json.zst");
    let mut config = config(&path, FileFormat::Json);
    config.compression = FileCompression::Zstd;
    let exporter = FileExporter::new(&ctx("file"), config);
    exporter.start().await.unwrap();
    exporter.consume(Telemetry::new(traces(2))).await.unwrap();
    exporter.shutdown(far()).await.unwrap();
    let data = std::fs::read(&path).unwrap();
    let messages = frames(&data);
    assert_eq!(messages.len(), 1);
    let json_bytes = zstd::decode_all(messages[0].as_slice()).unwrap();
    assert_eq!(json::decode_traces(&json_bytes).unwrap(), trace_request(2));
}

#[tokio::test]
async fn rotation_by_size_keeps_max_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.json");
    let mut config = config(&path, FileFormat::Json);
    config.rotation = Some(RotationConfig {
        max_backups: 2,
        ..RotationConfig::default()
    });
    let line_len = encode(&traces(1), FileFormat::Json, FileCompression::None)
        .unwrap()
        .len() as u64;
    // Two lines fit in a file; the third rotates.
    let exporter = FileExporter::with_max_file_bytes(&ctx("file"), config, line_len * 2);
    exporter.start().await.unwrap();
    for _ in 0..9 {
        exporter.consume(Telemetry::new(traces(1))).await.unwrap();
    }
    exporter.shutdown(far()).await.unwrap();

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "spans.json");
    for backup in &names[..2] {
        assert!(
            backup.starts_with("spans-") && backup.ends_with(".json") && backup.len() == 34,
            "{backup}"
        );
        let text = std::fs::read_to_string(dir.path().join(backup)).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
    // 9 lines: 4 full files rotated out (2 kept), 1 line in the current one.
    let current = std::fs::read_to_string(&path).unwrap();
    assert_eq!(current.lines().count(), 1);
}

#[tokio::test]
async fn truncates_or_appends_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    std::fs::write(&path, "old line\n").unwrap();
    let mut append = config(&path, FileFormat::Json);
    append.append = true;
    let exporter = FileExporter::new(&ctx("file"), append);
    exporter.start().await.unwrap();
    exporter.consume(Telemetry::new(traces(1))).await.unwrap();
    exporter.shutdown(far()).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("old line\n") && text.lines().count() == 2);

    let exporter = FileExporter::new(&ctx("file"), config(&path, FileFormat::Json));
    exporter.start().await.unwrap();
    exporter.shutdown(far()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
}

#[test]
fn config_validation() {
    let factory = FileExporterFactory;
    let parse = |yaml: &str| serde_yaml_ng::from_str::<FileConfig>(yaml).unwrap();
    assert_eq!(factory.validate(&parse("{}")).unwrap_err().path, "path");
    let ok = parse(
        "{path: /tmp/x.json, format: proto, rotation: {max_megabytes: 10}, flush_interval: 5s, compression: zstd}",
    );
    factory.validate(&ok).unwrap();
    assert_eq!(ok.rotation.as_ref().map(|r| r.max_backups), Some(100));
    assert_eq!(
        factory
            .validate(&parse("{path: x, append: true, compression: zstd}"))
            .unwrap_err()
            .path,
        "append"
    );
    assert_eq!(
        factory
            .validate(&parse("{path: x, group_by: {enabled: true}}"))
            .unwrap_err()
            .path,
        "group_by.enabled"
    );
    assert!(serde_yaml_ng::from_str::<FileConfig>("{path: x, compression: gzip}").is_err());
    assert!(serde_yaml_ng::from_str::<FileConfig>("{path: x, format: xml}").is_err());
}
