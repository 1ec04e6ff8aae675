//! The old chart's gateway config, unchanged but for loopback endpoints,
//! takes a remote config from a test OpAMP server (OllyScale-like) while the
//! load generator sends error traces: the tail-sampling policies and the
//! exporter's endpoint change in-process, every error trace arrives (at the
//! old sink or the new), and the new policy is in force afterwards.

mod support;

use collector_core::extension::opamp::proto::RemoteConfigStatuses;
use serde_yaml_ng::Value;
use std::process::Command;
use support::opamp_server::OpampServer;
use support::{Collector, eventually, read_file_exporter};

const ORIGINAL: &str = include_str!("data/original-gateway.yaml");

/// A collector that writes every span it receives over OTLP/gRPC to a file.
fn sink() -> Collector {
    Collector::start(
        support::binary("gateway-collector"),
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  file:
    path: "{dir}/spans.json"
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
    )
}

fn spans_at(sink: &Collector) -> usize {
    let path = sink.path("spans.json");
    if path.exists() {
        read_file_exporter(&path).span_count()
    } else {
        0
    }
}

/// Runs the load generator against `endpoint` (OTLP/gRPC) with `args`;
/// its JSON summary.
fn loadgen(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(support::workspace_binary("otel-loadgen"))
        .args([
            "--endpoint",
            endpoint,
            "--protocol",
            "grpc",
            "--unique",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run otel-loadgen");
    assert!(
        output.status.success(),
        "otel-loadgen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("loadgen summary")
}

fn count(summary: &serde_json::Value, key: &str) -> usize {
    summary[key].as_u64().expect("a count") as usize
}

/// The remote config an operator pushes: the same gateway with a
/// one-second decision wait, a policy set that also keeps every trace of
/// `ollyscale-probe`, and the exporter pointed at the new sink. It leaves
/// the opamp extension's section out: the running one is kept.
fn remote_config(sink: &str) -> String {
    let mut doc: Value = serde_yaml_ng::from_str(ORIGINAL).expect("original");
    let receivers = &mut doc["receivers"]["otlp"]["protocols"];
    receivers["grpc"]["endpoint"] = "127.0.0.1:0".into();
    receivers["http"]["endpoint"] = "127.0.0.1:0".into();
    let sampling = &mut doc["processors"]["tail_sampling"];
    sampling["decision_wait"] = "1s".into();
    sampling["policies"] = serde_yaml_ng::from_str(
        r#"
- name: errors
  type: status_code
  status_code: {status_codes: [ERROR]}
- name: probe
  type: string_attribute
  string_attribute: {key: service.name, values: [ollyscale-probe]}
"#,
    )
    .expect("policies");
    doc["exporters"]["otlp/to"]["endpoint"] = sink.into();
    doc["extensions"]
        .as_mapping_mut()
        .expect("extensions")
        .remove("opamp");
    doc["service"]["telemetry"] =
        serde_yaml_ng::from_str("metrics: {address: 127.0.0.1:0}").expect("telemetry");
    serde_yaml_ng::to_string(&doc).expect("yaml")
}

#[test]
fn remote_config_changes_policy_and_endpoint_without_losing_an_error_trace() {
    let server = OpampServer::start();
    // OllyScale's server hands a pushed config over only in a reply, so the
    // agent must talk regularly: the server asks for a 1s heartbeat.
    server.offer_heartbeat(1);
    let old_sink = sink();
    let new_sink = sink();
    let old_endpoint = old_sink.address("otlp", "grpc").to_string();
    let new_endpoint = new_sink.address("otlp", "grpc").to_string();

    let ws = server.ws_url();
    let sets = [
        "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:0".to_string(),
        "receivers.otlp.protocols.http.endpoint=127.0.0.1:0".to_string(),
        format!("exporters.otlp/to.endpoint={old_endpoint}"),
        format!("extensions.opamp.server.ws.endpoint={ws}"),
        "service.telemetry.metrics.address=127.0.0.1:0".to_string(),
    ];
    let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s.as_str()]).collect();
    let gateway = Collector::start_with_args(support::binary("gateway-collector"), ORIGINAL, &args);
    let gateway_grpc = gateway.address("otlp", "grpc").to_string();
    let uid = server.wait_for_agent();

    // Error traces for 6 seconds, every one kept by either policy set.
    let sender = {
        let endpoint = gateway_grpc.clone();
        std::thread::spawn(move || {
            loadgen(
                &endpoint,
                &[
                    "--rate",
                    "1000",
                    "--duration",
                    "6s",
                    "--items-per-request",
                    "20",
                    "--spans-per-trace",
                    "5",
                    "--error-ratio",
                    "1",
                    "--services",
                    "ollyscale-api",
                ],
            )
        })
    };
    eventually(
        "traffic reaching the gateway",
        || gateway.metric("otelcol_receiver_accepted_spans_total", &[]),
        |n| *n > 0.0,
    );
    let hash = server.push_config(&uid, &remote_config(&new_endpoint));
    server.wait_for("APPLIED", |s| {
        s.remote_status(&uid).is_some_and(|st| {
            st.last_remote_config_hash == hash && st.status == RemoteConfigStatuses::Applied as i32
        })
    });
    let statuses = server.state().statuses(&uid, &hash);
    assert_eq!(
        statuses,
        [
            RemoteConfigStatuses::Applying as i32,
            RemoteConfigStatuses::Applied as i32
        ],
        "APPLYING then APPLIED"
    );
    server.wait_for("the new effective config", |s| {
        s.effective_config(&uid)
            .is_some_and(|c| c.contains(&new_endpoint) && c.contains("ollyscale-probe"))
    });

    let errors = sender.join().expect("loadgen thread");
    assert_eq!(count(&errors, "failed_requests"), 0, "{errors}");
    assert_eq!(count(&errors, "refused_requests"), 0, "{errors}");
    let accepted = count(&errors, "ok_items");
    assert!(accepted >= 1000, "{errors}");
    // Every accepted span of an error trace arrives, at one sink or the other.
    eventually(
        "every error span at the sinks",
        || (spans_at(&old_sink), spans_at(&new_sink)),
        |(old, new)| old + new >= accepted,
    );
    let (at_old, at_new) = (spans_at(&old_sink), spans_at(&new_sink));
    assert_eq!(at_old + at_new, accepted, "no span lost or duplicated");
    assert!(
        at_old > 0 && at_new > 0,
        "both endpoints served: {at_old} / {at_new}"
    );

    // The new policy keeps successful ollyscale-probe traces, which the old
    // set sampled at 5%: all 40 traces (200 spans) arrive.
    let probes = loadgen(
        &gateway_grpc,
        &[
            "--total-items",
            "200",
            "--items-per-request",
            "20",
            "--spans-per-trace",
            "5",
            "--error-ratio",
            "0",
            "--services",
            "ollyscale-probe",
        ],
    );
    assert_eq!(count(&probes, "ok_items"), 200, "{probes}");
    eventually(
        "the probe traces at the new sink",
        || spans_at(&new_sink),
        |n| *n >= at_new + 200,
    );
    assert_eq!(
        spans_at(&old_sink),
        at_old,
        "nothing more at the old endpoint"
    );
}
