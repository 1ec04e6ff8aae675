//! The collector configs of the original chart (otelcol-contrib) pass
//! `validate` unchanged, and run unchanged but for loopback endpoints (the
//! gateway's OpAMP server is a test fixture).

use std::path::Path;
use std::process::Command;

mod support;

fn validate(binary: &str, file: &str) -> (bool, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    let output = Command::new(support::binary(binary))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Lines of the form `  <path>: unknown <kind> type "<type>"...`, reduced to `<path>`.
fn unknown_types(text: &str) -> Vec<String> {
    let mut paths: Vec<String> = text
        .lines()
        .filter(|l| l.contains(": unknown ") && l.contains(" type \""))
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("invalid configuration: ").unwrap_or(l);
            l.split(": ").next().map(str::to_string)
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn agent_config_validates_unchanged() {
    let (ok, text) = validate("agent-collector", "original-agent.yaml");
    assert!(ok, "{text}");
}

#[test]
fn gateway_config_validates_unchanged() {
    let (ok, text) = validate("gateway-collector", "original-gateway.yaml");
    assert!(ok, "{text}");
    assert!(unknown_types(&text).is_empty(), "{text}");
}

#[test]
fn browser_config_validates_unchanged() {
    let (ok, text) = validate("browser-collector", "original-browser.yaml");
    assert!(ok, "{text}");
}

#[test]
fn validate_accepts_the_embedded_defaults_and_exits_zero() {
    for binary in ["agent-collector", "gateway-collector", "browser-collector"] {
        let output = Command::new(support::binary(binary))
            .arg("validate")
            .output()
            .expect("run validate");
        assert!(
            output.status.success(),
            "{binary}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn components_lists_what_is_built_in() {
    let output = Command::new(support::binary("gateway-collector"))
        .arg("components")
        .output()
        .expect("run components");
    let text = String::from_utf8_lossy(&output.stdout);
    for want in [
        "receiver   otlp",
        "processor  batch",
        "processor  resource",
        "processor  memory_limiter",
        "processor  tail_sampling",
        "exporter   otlp",
        "exporter   otlp_grpc",
        "exporter   debug",
        "exporter   file",
        "exporter   loadbalancing",
        "extension  health_check",
        "extension  opamp",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// Starts `binary` with the original config `file` and loopback endpoints;
/// returns once it reports ready, and it answers OTLP/HTTP.
fn runs(binary: &str, file: &str, extra: &[String]) -> support::Collector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    let config = std::fs::read_to_string(&path).expect("original config");
    let mut sets = vec![
        "receivers.otlp.protocols.http.endpoint=127.0.0.1:0".to_string(),
        "service.telemetry.metrics.address=127.0.0.1:0".to_string(),
    ];
    if config.contains("grpc:") {
        sets.push("receivers.otlp.protocols.grpc.endpoint=127.0.0.1:0".to_string());
    }
    sets.extend_from_slice(extra);
    let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s.as_str()]).collect();
    let collector = support::Collector::start_with_args(support::binary(binary), &config, &args);
    collector.wait_for_log("ready", |line| {
        line["message"] == "everything is ready; begin running and processing data"
    });
    let addr = collector.address("otlp", "http");
    let response = support::http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(response.status, 200, "{binary} {file}");
    collector
}

#[test]
fn all_three_original_configs_run() {
    let _agent = runs("agent-collector", "original-agent.yaml", &[]);
    let _browser = runs("browser-collector", "original-browser.yaml", &[]);
    let server = support::opamp_server::OpampServer::start();
    let _gateway = runs(
        "gateway-collector",
        "original-gateway.yaml",
        &[format!(
            "extensions.opamp.server.ws.endpoint={}",
            server.ws_url()
        )],
    );
    let uid = server.wait_for_agent();
    server.wait_for("the gateway's description", |s| {
        s.description(&uid).is_some_and(|d| {
            collector_core::extension::opamp::proto::find_string(
                &d.identifying_attributes,
                "service.name",
            ) == Some("gateway-collector")
        })
    });
}
