//! The collector configs of the original chart (otelcol-contrib) must pass
//! `validate` unchanged once every component exists; until then `validate`
//! names exactly the components that are missing, and nothing else.

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
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
