//! The `opamp` extension against a test OpAMP server that behaves like
//! OllyScale's (testkit's `opamp_server`: one reply per message, a pushed
//! config delivered only in the reply to the agent's next message): what the
//! collector reports, its identity across restarts, reconnecting, both
//! transports, and remote configs applied (or refused) in-process while
//! traffic flows.

mod support;

use collector_core::extension::opamp::proto::{self, AgentToServer, RemoteConfigStatuses};
use prost::Message;
use serde_yaml_ng::Value;
use std::path::Path;
use std::process::Command;
use support::opamp_server::{OpampServer, OpampState, Via};
use support::{Collector, eventually, http_request, make_traces, read_file_exporter};

/// Bits of `AgentCapabilities` every collector reports with the defaults:
/// ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig, ReportsHealth,
/// ReportsRemoteConfig, ReportsHeartbeat.
const DEFAULT_CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x800 | 0x1000 | 0x2000;

fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A small collector: OTLP/HTTP in, file out, and the given `opamp` section.
fn config(opamp: &str, out: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 50ms
exporters:
  file:
    path: {{dir}}/{out}
    append: true
extensions:
  opamp:
{opamp}
service:
  extensions: [opamp]
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"#
    )
}

fn ws_opamp(server: &OpampServer, extra: &str) -> String {
    format!(
        "    server:\n      ws:\n        endpoint: {}\n    heartbeat_interval: 200ms\n{extra}",
        server.ws_url()
    )
}

/// As [`ws_opamp`], keeping the UID and remote config in `dir`.
fn ws_opamp_with_state(server: &OpampServer, dir: &Path) -> String {
    ws_opamp(server, &format!("    state_directory: {}\n", dir.display()))
}

fn post_traces(addr: std::net::SocketAddr, seed: u8) -> u16 {
    let body = make_traces(seed, 2, 3, "opamp-test").encode_to_vec();
    http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    )
    .status
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("yaml")
}

fn status_of(state: &OpampState, uid: &[u8], hash: &[u8]) -> Option<(i32, String)> {
    state
        .remote_status(uid)
        .filter(|s| s.last_remote_config_hash == hash)
        .map(|s| (s.status, s.error_message))
}

fn wait_for_status(
    server: &OpampServer,
    uid: &[u8],
    hash: &[u8],
    want: RemoteConfigStatuses,
) -> String {
    server.wait_for("the remote config status", |s| {
        status_of(s, uid, hash).is_some_and(|(status, _)| status == want as i32)
    });
    status_of(&server.state(), uid, hash)
        .map(|(_, message)| message)
        .unwrap_or_default()
}

#[test]
fn reports_description_capabilities_effective_config_health_and_heartbeats() {
    let server = OpampServer::start();
    let collector = Collector::start_with_args(
        support::binary("gateway-collector"),
        &config(&ws_opamp(&server, ""), "out.json"),
        &["--set", "processors.batch.send_batch_size=77"],
    );
    let uid = server.wait_for_agent();
    assert_eq!(uid.len(), 16, "a 16-byte UUID");
    // A heartbeat every 200ms: three more messages come without asking.
    server.wait_for("heartbeats", |s| s.from_agent(&uid).count() >= 4);

    let state = server.state();
    let messages: Vec<&AgentToServer> = state.from_agent(&uid).collect();
    let first = messages[0];
    assert_eq!(first.capabilities, DEFAULT_CAPABILITIES);
    let description = first.agent_description.as_ref().expect("description");
    let identifying = &description.identifying_attributes;
    assert_eq!(
        proto::find_string(identifying, "service.name"),
        Some("gateway-collector")
    );
    assert_eq!(
        proto::find_string(identifying, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        proto::find_string(identifying, "service.instance.id"),
        Some(uuid_text(&uid).as_str())
    );
    let other = &description.non_identifying_attributes;
    assert_eq!(proto::find_string(other, "os.type"), Some("linux"));
    assert!(proto::find_string(other, "host.name").is_some_and(|h| !h.is_empty()));
    assert!(proto::find_string(other, "host.arch").is_some());

    // The effective config is the file with --set applied.
    let mut expected = yaml(&std::fs::read_to_string(&collector.config_path).expect("config"));
    expected["processors"]["batch"]["send_batch_size"] = Value::Number(77.into());
    // testkit's own --set.
    expected["service"]["telemetry"]["logs"] = yaml("encoding: json");
    let effective = state.effective_config(&uid).expect("effective config");
    assert_eq!(yaml(&effective), expected, "{effective}");

    let health = state.health(&uid).expect("health");
    assert!(health.healthy, "{health:?}");
    let traces = &health.component_health_map["pipeline:traces"];
    assert!(traces.healthy);
    for component in ["receiver:otlp", "processor:batch", "exporter:file"] {
        assert!(
            traces.component_health_map[component].healthy,
            "{component}: {traces:?}"
        );
    }

    // Sequence numbers count up; heartbeats carry no unchanged state.
    for pair in messages.windows(2) {
        assert_eq!(pair[1].sequence_num, pair[0].sequence_num + 1);
    }
    let heartbeat = messages.last().expect("last");
    assert!(heartbeat.agent_description.is_none() && heartbeat.effective_config.is_none());
    assert_eq!(heartbeat.capabilities, DEFAULT_CAPABILITIES);
    let seen = messages.len();
    drop(state);

    // The server asks for everything again: the next message has it.
    server.request_full_state();
    server.wait_for("a full report", |s| {
        s.from_agent(&uid)
            .skip(seen)
            .any(|m| m.agent_description.is_some() && m.effective_config.is_some())
    });
}

#[test]
fn wire_bytes_decode_with_an_independent_implementation() {
    let server = OpampServer::start();
    let collector = Collector::start(
        support::binary("agent-collector"),
        &config(&ws_opamp(&server, ""), "out.json"),
    );
    let uid = server.wait_for_agent();
    server.wait_for("two frames", |s| s.raw_frames.len() >= 2);
    let frames: Vec<Vec<u8>> = server.state().raw_frames[..2].to_vec();
    let paths: Vec<String> = frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let path = collector.path(&format!("frame{i}.bin"));
            std::fs::write(&path, frame).expect("write frame");
            path.display().to_string()
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/decode_opamp_frame.py"
    );
    let output = Command::new(support::python())
        .arg(script)
        .args(&paths)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let first = &decoded[0];
    assert_eq!(first["header"], 0);
    assert_eq!(first["unknown_fields"], 0);
    let uid_hex: String = uid.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(first["instance_uid_hex"], uid_hex.as_str());
    let message = &first["message"];
    assert_eq!(message["capabilities"], DEFAULT_CAPABILITIES.to_string());
    let identifying = message["agent_description"]["identifying_attributes"]
        .as_array()
        .expect("attributes");
    assert!(
        identifying
            .iter()
            .any(|kv| kv["key"] == "service.name"
                && kv["value"]["string_value"] == "agent-collector")
    );
    let body = message["effective_config"]["config_map"]["config_map"][""]["body"]
        .as_str()
        .expect("effective config body (base64)");
    assert!(!body.is_empty());
    assert_eq!(decoded[1]["message"]["sequence_num"], "1");
}

#[test]
fn instance_uid_is_kept_in_the_state_directory_and_disconnect_is_said() {
    let server = OpampServer::start();
    let state_dir = tempfile::tempdir().expect("state dir");
    let opamp = ws_opamp_with_state(&server, state_dir.path());
    let mut first = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "a.json"),
    );
    let uid = server.wait_for_agent();
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success(), "{}", first.log_text());
    server.wait_for("AgentDisconnect", |s| {
        s.from_agent(&uid).any(|m| m.agent_disconnect.is_some())
    });
    let kept = std::fs::read_to_string(state_dir.path().join("instance_uid")).expect("kept uid");
    assert_eq!(kept.trim(), uuid_text(&uid));
    assert_eq!(&kept[14..15], "7", "a UUIDv7: {kept}");

    let _second = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "b.json"),
    );
    server.wait_for("the restarted agent under the same UID", |s| {
        s.from_agent(&uid).filter(|m| m.sequence_num == 0).count() == 2
    });
    assert_eq!(
        server.state().agents(),
        vec![uid],
        "one identity across restarts"
    );
}

#[test]
fn reconnects_when_the_server_comes_back_and_adopts_an_assigned_uid() {
    let server = OpampServer::start();
    let addresses = server.addresses();
    let _collector = Collector::start(
        support::binary("gateway-collector"),
        &config(&ws_opamp(&server, ""), "out.json"),
    );
    let uid = server.wait_for_agent();
    drop(server);

    let server = OpampServer::start_on(addresses.0, addresses.1);
    server.wait_for("the agent back with its full state", |s| {
        s.from_agent(&uid)
            .any(|m| m.agent_description.is_some() && m.effective_config.is_some())
    });

    let assigned = vec![0x42; 16];
    server.assign_uid(assigned.clone());
    server.wait_for("messages under the assigned UID", |s| {
        s.from_agent(&assigned).any(|m| {
            m.agent_description.as_ref().is_some_and(|d| {
                proto::find_string(&d.identifying_attributes, "service.instance.id")
                    == Some(uuid_text(&assigned).as_str())
            })
        })
    });

    // "Unavailable, retry later" ends the connection; the agent comes back.
    let connections = server.state().connections;
    server.unavailable_next(std::time::Duration::from_millis(100));
    server.wait_for("a new connection", |s| s.connections > connections);
}

#[test]
fn http_transport_polls_and_applies_remote_config() {
    let server = OpampServer::start();
    let opamp = format!(
        "    server:\n      http:\n        endpoint: {}\n        polling_interval: 200ms\n",
        server.http_url()
    );
    let collector = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "before.json"),
    );
    let uid = server.wait_for_agent();
    server.wait_for("polls", |s| {
        s.messages
            .iter()
            .filter(|(via, _)| *via == Via::Http)
            .count()
            >= 3
    });

    let new_config =
        config(&opamp, "after.json").replace("{dir}", &collector.dir.path().display().to_string());
    let hash = server.push_config(&uid, &new_config);
    let message = wait_for_status(&server, &uid, &hash, RemoteConfigStatuses::Applied);
    assert_eq!(message, "");
    server.wait_for("the new effective config", |s| {
        s.effective_config(&uid)
            .is_some_and(|c| c.contains("after.json"))
    });
    // The same config (same hash) again is not applied again: after the
    // reply that carried it and two more exchanges, the statuses for the
    // hash are still just APPLYING, APPLIED.
    let again = new_config.clone();
    server.push_remote(
        &uid,
        proto::AgentRemoteConfig {
            config: Some(proto::AgentConfigMap {
                config_map: std::collections::HashMap::from([(
                    String::new(),
                    proto::AgentConfigFile {
                        body: again.into_bytes(),
                        content_type: "text/yaml".into(),
                    },
                )]),
            }),
            config_hash: hash.clone(),
        },
    );
    server.wait_for("the repeated config delivered", |s| !s.is_pending(&uid));
    let delivered_at = server.state().messages.len();
    server.wait_for("two more exchanges", |s| {
        s.messages.len() >= delivered_at + 2
    });
    let statuses = server.state().statuses(&uid, &hash);
    assert_eq!(
        statuses,
        [
            RemoteConfigStatuses::Applying as i32,
            RemoteConfigStatuses::Applied as i32
        ]
    );

    let addr = collector.address("otlp", "http");
    assert_eq!(post_traces(addr, 1), 200);
    eventually(
        "spans in the new pipeline's file",
        || {
            let path = collector.path("after.json");
            if path.exists() {
                read_file_exporter(&path).span_count()
            } else {
                0
            }
        },
        |n| *n == 6,
    );
}

#[test]
fn bad_remote_configs_fail_with_the_reason_and_the_old_pipelines_keep_serving() {
    let server = OpampServer::start();
    let opamp = ws_opamp(&server, "");
    let collector = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "out.json"),
    );
    let uid = server.wait_for_agent();
    let addr = collector.address("otlp", "http");
    let dir = collector.dir.path().display().to_string();
    let good = config(&opamp, "out.json").replace("{dir}", &dir);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();

    let cases = [
        ("syntax", "receivers: [unclosed".to_string(), "invalid YAML"),
        (
            "unknown component",
            good.replace("  file:\n", "  nosuch:\n")
                .replace("exporters: [file]", "exporters: [nosuch]"),
            "unknown exporter type \"nosuch\"",
        ),
        (
            "port in use",
            good.replace(
                "127.0.0.1:0\nprocessors",
                &format!("127.0.0.1:{busy_port}\nprocessors"),
            ),
            "cannot listen",
        ),
    ];
    let mut sent = 0;
    for (seed, (what, yaml, reason)) in cases.into_iter().enumerate() {
        let hash = server.push_config(&uid, &yaml);
        let message = wait_for_status(&server, &uid, &hash, RemoteConfigStatuses::Failed);
        assert!(message.contains(reason), "{what}: {message}");
        // The running pipelines still take and deliver data.
        assert_eq!(post_traces(addr, seed as u8), 200, "{what}");
        sent += 6;
        eventually(
            "spans delivered by the old pipeline",
            || read_file_exporter(&collector.path("out.json")).span_count(),
            |n| *n == sent,
        );
    }
    // The effective config never changed.
    let effective = server.state().effective_config(&uid).expect("effective");
    let mut expected = yaml(&good);
    expected["service"]["telemetry"]["logs"] = yaml("encoding: json");
    assert_eq!(yaml(&effective), expected);
    drop(busy);
}

#[test]
fn an_applied_remote_config_is_used_again_after_a_restart() {
    let server = OpampServer::start();
    let state_dir = tempfile::tempdir().expect("state dir");
    let opamp = ws_opamp_with_state(&server, state_dir.path());
    let mut first = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "file.json"),
    );
    let uid = server.wait_for_agent();
    let remote =
        config(&opamp, "remote.json").replace("{dir}", &first.dir.path().display().to_string());
    let hash = server.push_config(&uid, &remote);
    wait_for_status(&server, &uid, &hash, RemoteConfigStatuses::Applied);
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success());
    assert!(Path::new(&state_dir.path().join("remote_config.pb")).exists());

    // Started again from its file config, it comes back to the remote one
    // without the server sending anything.
    let seen = server.state().messages.len();
    let second = Collector::start(
        support::binary("gateway-collector"),
        &config(&opamp, "file.json"),
    );
    server.wait_for("the kept remote config applied", |s| {
        s.messages[seen..].iter().any(|(_, m)| {
            m.remote_config_status.as_ref().is_some_and(|st| {
                st.last_remote_config_hash == hash
                    && st.status == RemoteConfigStatuses::Applied as i32
            }) && m
                .effective_config
                .as_ref()
                .and_then(|e| e.config_map.as_ref())
                .and_then(|c| c.config_map.get(""))
                .is_some_and(|f| String::from_utf8_lossy(&f.body).contains("remote.json"))
        })
    });
    assert_eq!(post_traces(second.address("otlp", "http"), 9), 200);
    eventually(
        "spans in the remote config's file",
        || {
            let path = first.path("remote.json");
            if path.exists() {
                read_file_exporter(&path).span_count()
            } else {
                0
            }
        },
        |n| *n >= 6,
    );
}
