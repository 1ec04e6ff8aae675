//! The shared harness (`testkit`), plus where this crate's binaries are.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::PathBuf;
pub use testkit::*;

/// Path of a collector binary built by cargo for this test run.
pub fn binary(name: &str) -> PathBuf {
    match name {
        "agent-collector" => PathBuf::from(env!("CARGO_BIN_EXE_agent-collector")),
        "gateway-collector" => PathBuf::from(env!("CARGO_BIN_EXE_gateway-collector")),
        "browser-collector" => PathBuf::from(env!("CARGO_BIN_EXE_browser-collector")),
        other => panic!("unknown binary {other}"),
    }
}

/// Path of a binary of another workspace package (`otel-loadgen`,
/// `otel-sink`), which cargo does not hand to this crate's tests: it sits
/// beside the test executable's folder once `cargo build --workspace` ran
/// (as `cargo xtask ci` does before the tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as `cargo xtask ci` does)",
        path.display()
    );
    path
}

/// Starts `browser-collector` with its embedded config as shipped (receiver,
/// processors, pipelines), listening on a free loopback port and writing to
/// a `file` exporter (`{dir}/out.json`) instead of the gateways, with the
/// `(key, value)` changes made to its `otlp` receiver's `protocols.http`.
pub fn start_embedded_browser(
    http_overrides: &[(&str, serde_yaml_ng::Value)],
) -> (Collector, std::net::SocketAddr) {
    use serde_yaml_ng::Value;
    let mut config: Value =
        serde_yaml_ng::from_str(collector::role::Role::Browser.default_config()).expect("YAML");
    let http = &mut config["receivers"]["otlp"]["protocols"]["http"];
    http["endpoint"] = Value::from("127.0.0.1:0");
    for (key, value) in http_overrides {
        http[*key] = value.clone();
    }
    config["exporters"] =
        serde_yaml_ng::from_str("file: {path: '{dir}/out.json'}").expect("exporters");
    config["extensions"] = Value::Null;
    config["service"]["extensions"] = Value::Sequence(Vec::new());
    config["service"]["telemetry"]["metrics"]["address"] = Value::from("127.0.0.1:0");
    for signal in ["traces", "metrics", "logs"] {
        config["service"]["pipelines"][signal]["exporters"] =
            serde_yaml_ng::from_str("[file]").expect("exporters");
    }
    let text = serde_yaml_ng::to_string(&config).expect("YAML");
    let collector = Collector::start(binary("browser-collector"), &text);
    let http = collector.address("otlp", "http");
    (collector, http)
}
