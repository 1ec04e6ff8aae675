//! The rendered chart runs: `helm template` of the defaults, then each
//! rendered collector started with exactly its ConfigMap files, args and env
//! in a network namespace standing for its pod, on a bridge standing for the
//! cluster network, with dnsmasq answering the cluster names the configs use
//! (`gateway-collector-headless.otel-system...` -> the gateway pods,
//! `ollyscale-otlp-receiver.ollyscale...` -> a receiving collector,
//! `ollyscale-opamp-server.ollyscale...` -> the test OpAMP server). The
//! OpenTelemetry Python SDK sends error traces to the agent and a browser
//! path posts OTLP/JSON; everything arrives at the receiver, each trace whole
//! (so each went to one gateway), also across scaling the gateways from 1
//! to 3. `cargo xtask e2e` runs this test alone.
//!
//! Needs root (namespaces) and the tools `cargo xtask setup` installs.

mod support;

use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::netns::{self, Cluster, Dnsmasq, NetNs};
use support::opamp_server::OpampServer;
use support::{Collector, http_request, read_file_exporter};

const HEADLESS: &str = "gateway-collector-headless.otel-system.svc.cluster.local";
const RECEIVER: &str = "ollyscale-otlp-receiver.ollyscale.svc.cluster.local";
const OPAMP: &str = "ollyscale-opamp-server.ollyscale.svc.cluster.local";
/// The cluster network: the bridge is .1 (DNS, the OpAMP server).
const PREFIX: &str = "10.213.0";
const GATEWAYS: [u8; 3] = [11, 12, 13];
const AGENT: u8 = 21;
const BROWSER: u8 = 31;
const RECEIVER_HOST: u8 = 50;

/// What the chart rendered for one collector.
struct Rendered {
    collector_yaml: String,
    overlay_yaml: String,
    args: Vec<String>,
    env: Vec<String>,
}

fn render() -> BTreeMap<&'static str, Rendered> {
    let helm = std::env::var_os("OLLY_HELM3")
        .map(PathBuf::from)
        .expect("OLLY_HELM3 (run through `cargo xtask ci`, or eval \"$(cargo xtask env)\")");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/charts/ollyscale-otel");
    let home = tempfile::tempdir().expect("helm home");
    let output = Command::new(helm)
        .args(["template", "ollyscale-otel"])
        .arg(&chart)
        .args(["--namespace", "otel-system"])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let docs: Vec<Value> = text
        .split("\n---")
        .filter_map(|d| serde_yaml_ng::from_str::<Value>(d).ok())
        .filter(|d| d.get("kind").is_some())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let mut out = BTreeMap::new();
    for (name, kind) in [
        ("agent-collector", "DaemonSet"),
        ("gateway-collector", "Deployment"),
        ("browser-collector", "Deployment"),
    ] {
        let data = find("ConfigMap", name)["data"].clone();
        let container = find(kind, name)["spec"]["template"]["spec"]["containers"][0].clone();
        let strings = |v: &Value, field: Option<&str>| -> Vec<String> {
            v.as_sequence()
                .expect("list")
                .iter()
                .filter_map(|x| match field {
                    Some(f) => x[f].as_str(),
                    None => x.as_str(),
                })
                .map(str::to_string)
                .collect()
        };
        out.insert(
            name,
            Rendered {
                collector_yaml: data["collector.yaml"]
                    .as_str()
                    .expect("collector.yaml")
                    .to_string(),
                overlay_yaml: data["chart-overlay.yaml"]
                    .as_str()
                    .expect("overlay")
                    .to_string(),
                args: strings(&container["args"], None),
                env: strings(&container["env"], Some("name")),
            },
        );
    }
    out
}

/// Starts `binary` in `pod` as the chart's pod would run it: its ConfigMap's
/// two files (mounted at /etc/ollyscale-otel in the pod; here a temp dir),
/// its args, and its env (the downward-API values filled in).
fn start_pod(
    pod: &NetNs,
    name: &str,
    rendered: &Rendered,
    ip: &str,
    label: &str,
    mounts: &Path,
) -> Collector {
    let mut command = pod.command(support::binary(name));
    for var in &rendered.env {
        let value = match var.as_str() {
            "KUBE_NODE_NAME" => "node-1".to_string(),
            "POD_NAME" => label.to_string(),
            "POD_NAMESPACE" => "otel-system".to_string(),
            "POD_IP" => ip.to_string(),
            other => panic!("unexpected env {other} in the rendered pod"),
        };
        command.env(var, value);
    }
    // The harness writes collector.yaml itself (the first --config) and
    // adds `--set service.telemetry.logs.encoding=json` to read the logs;
    // the overlay file stands where the ConfigMap mount would be.
    let overlay_path = mounts.join(format!("{label}-chart-overlay.yaml"));
    std::fs::write(&overlay_path, &rendered.overlay_yaml).expect("write overlay");
    let args: Vec<String> = rendered
        .args
        .iter()
        .filter(|a| *a != "--config=/etc/ollyscale-otel/collector.yaml")
        .map(|a| match a.as_str() {
            "--config=/etc/ollyscale-otel/chart-overlay.yaml" => {
                format!("--config={}", overlay_path.display())
            }
            other => other.to_string(),
        })
        .collect();
    assert_eq!(args.len(), rendered.args.len() - 1, "{:?}", rendered.args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collector = Collector::spawn(command, label, &rendered.collector_yaml, &args);
    collector.wait_for_log("ready", |line| {
        line["message"] == "everything is ready; begin running and processing data"
    });
    collector
}

/// The health_check probe a kubelet would make.
fn probe(pod: &NetNs, ip: &str) -> u16 {
    let address: std::net::SocketAddr = format!("{ip}:13133").parse().expect("addr");
    pod.enter(move || http_request(address, "GET", "/", &[], b"").status)
}

const RECEIVER_CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4343
exporters:
  file:
    path: "{dir}/received.json"
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Spans at the receiver by trace ID (hex).
fn received(receiver: &Collector) -> BTreeMap<String, usize> {
    let path = receiver.path("received.json");
    let mut out = BTreeMap::new();
    if path.exists() {
        for span in read_file_exporter(&path).spans() {
            *out.entry(hex(&span.trace_id)).or_insert(0) += 1;
        }
    }
    out
}

/// Runs the Python SDK in the cluster namespace against the agent.
fn python_traces(cluster: &Cluster, traces: usize) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/send_error_traces.py");
    let output = cluster
        .ns
        .command(support::python())
        .arg(script)
        .args([
            "--endpoint",
            &format!("http://{}:4317", cluster.address(AGENT)),
        ])
        .args([
            "--traces",
            &traces.to_string(),
            "--service",
            "ollyscale-e2e",
        ])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["failed_exports"], 0, "{summary}");
    summary["trace_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// What a page's OTLP/HTTP JSON exporter posts: one trace of 3 spans.
fn browser_trace(cluster: &Cluster, n: u8) -> String {
    let trace_id = format!("{:02x}{}", n, "b".repeat(30));
    // Now: the chart's browser protections refuse timestamps a day off.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let span = |i: u8, parent: &str| {
        serde_json::json!({
            "traceId": trace_id, "spanId": format!("{:02x}{:02x}{}", n, i, "c".repeat(12)),
            "parentSpanId": parent, "name": format!("click {i}"), "kind": 1,
            "startTimeUnixNano": (now - 100_000_000).to_string(), "endTimeUnixNano": now.to_string()
        })
    };
    let root = format!("{n:02x}00{}", "c".repeat(12));
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web-e2e"}}]},
        "scopeSpans": [{"scope": {"name": "@opentelemetry/sdk-trace-web"}, "spans": [span(0, ""), span(1, &root), span(2, &root)]}]
    }]});
    let address: std::net::SocketAddr = format!("{}:4318", cluster.address(BROWSER))
        .parse()
        .expect("addr");
    let status = cluster.ns.enter(move || {
        http_request(
            address,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .status
    });
    assert_eq!(status, 200);
    trace_id
}

#[test]
fn the_rendered_chart_runs_and_scales_from_one_gateway_to_three() {
    if netns::skip_without_namespaces() {
        return;
    }
    let rendered = render();
    let mounts_dir = tempfile::tempdir().expect("mounts");
    let mounts = mounts_dir.path();
    let mut cluster = Cluster::create("e2e", PREFIX);
    let bridge = cluster.gateway_address();
    let gateway_ips: Vec<String> = GATEWAYS.iter().map(|h| cluster.address(*h)).collect();
    let dns = Dnsmasq::start_at(
        &cluster.ns,
        &bridge,
        &[
            (HEADLESS, &[gateway_ips[0].as_str()]),
            (RECEIVER, &[cluster.address(RECEIVER_HOST).as_str()]),
            (OPAMP, &[bridge.as_str()]),
        ],
    );
    let opamp = {
        let ws: std::net::SocketAddr = format!("{bridge}:4320").parse().expect("addr");
        let http: std::net::SocketAddr = format!("{bridge}:0").parse().expect("addr");
        cluster.ns.enter(move || OpampServer::start_on(ws, http))
    };

    // OllyScale's receiver, then one gateway, the agent and the browser collector.
    let receiver_pod = cluster.pod("rcv", RECEIVER_HOST);
    let receiver = Collector::spawn(
        receiver_pod.command(support::binary("gateway-collector")),
        "receiver",
        RECEIVER_CONFIG,
        &[],
    );
    receiver.address("otlp", "grpc");
    let mut gateway_pods = Vec::new();
    let mut gateways = Vec::new();
    let pod = cluster.pod("gw1", GATEWAYS[0]);
    gateways.push(start_pod(
        &pod,
        "gateway-collector",
        &rendered["gateway-collector"],
        &gateway_ips[0],
        "gateway-1",
        mounts,
    ));
    gateway_pods.push(pod);
    let agent_pod = cluster.pod("agent", AGENT);
    let _agent = start_pod(
        &agent_pod,
        "agent-collector",
        &rendered["agent-collector"],
        &cluster.address(AGENT),
        "agent",
        mounts,
    );
    let browser_pod = cluster.pod("browser", BROWSER);
    let _browser = start_pod(
        &browser_pod,
        "browser-collector",
        &rendered["browser-collector"],
        &cluster.address(BROWSER),
        "browser",
        mounts,
    );

    // The probes answer, and the gateway reported itself over OpAMP.
    assert_eq!(probe(&gateway_pods[0], &gateway_ips[0]), 200);
    assert_eq!(probe(&agent_pod, &cluster.address(AGENT)), 200);
    assert_eq!(probe(&browser_pod, &cluster.address(BROWSER)), 200);
    let uid = opamp.wait_for_agent();
    opamp.wait_for("the gateway's effective config", |s| {
        s.effective_config(&uid)
            .is_some_and(|c| c.contains(RECEIVER))
    });

    // One gateway: Python SDK error traces through the agent, browser traces.
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for id in python_traces(&cluster, 20) {
        expected.insert(id, 5);
    }
    for n in 0..5 {
        expected.insert(browser_trace(&cluster, n), 3);
    }

    // Scale to three: start two more gateways, then change the DNS answer.
    for (i, host) in GATEWAYS.iter().enumerate().skip(1) {
        let pod = cluster.pod(&format!("gw{}", i + 1), *host);
        gateways.push(start_pod(
            &pod,
            "gateway-collector",
            &rendered["gateway-collector"],
            &gateway_ips[i],
            &format!("gateway-{}", i + 1),
            mounts,
        ));
        gateway_pods.push(pod);
    }
    let all: Vec<&str> = gateway_ips.iter().map(String::as_str).collect();
    dns.set(&cluster.ns, HEADLESS, &all);
    // The agent re-resolves every 5 s (the chart config's default, with a
    // 1 s lookup timeout that a loaded CI machine sometimes misses; a failed
    // lookup keeps the current backends): wait until it routes over three
    // gateways, for longer than the usual patience.
    let agent_metrics = || {
        let address: std::net::SocketAddr = format!("{}:8888", cluster.address(AGENT))
            .parse()
            .expect("addr");
        agent_pod.enter(move || {
            String::from_utf8_lossy(&http_request(address, "GET", "/metrics", &[], b"").body)
                .into_owned()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let text = agent_metrics();
        if support::metric_sum(&text, "otelcol_loadbalancer_num_backends", &[]) == 3.0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            let resolutions: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("otelcol_loadbalancer_num_"))
                .collect();
            panic!(
                "the agent never used three gateways: {resolutions:?}\nagent log:\n{}",
                _agent.log_text()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for id in python_traces(&cluster, 40) {
        expected.insert(id, 5);
    }
    for n in 5..10 {
        expected.insert(browser_trace(&cluster, n), 3);
    }

    // Everything arrives, each trace whole: tail sampling (the chart's
    // policies, 10 s decision wait) kept every error trace and every
    // non-ollyscale (browser) trace, and a trace split over two gateways
    // would have lost its OK spans (5% sampling for ollyscale-* successes).
    // Batching (5 s at the agent and the gateway) and the 10 s decision wait
    // add up to about 20 s; a loaded CI machine gets more than the usual
    // patience.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let got = loop {
        let got = received(&receiver);
        if expected.iter().all(|(id, n)| got.get(id) == Some(n)) {
            break got;
        }
        let missing: Vec<(&String, &usize, Option<&usize>)> = expected
            .iter()
            .filter(|(id, n)| got.get(*id) != Some(*n))
            .map(|(id, n)| (id, n, got.get(id)))
            .collect();
        assert!(
            std::time::Instant::now() < deadline,
            "traces missing or partial at the receiver (id, expected, got): {missing:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let extra: BTreeSet<&String> = got
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    assert!(extra.is_empty(), "unexpected traces: {extra:?}");
    // The two new gateways took part.
    let mut busy = 0;
    for (pod, ip) in gateway_pods.iter().zip(&gateway_ips) {
        let address: std::net::SocketAddr = format!("{ip}:8888").parse().expect("addr");
        let text = pod.enter(move || {
            String::from_utf8_lossy(&http_request(address, "GET", "/metrics", &[], b"").body)
                .into_owned()
        });
        if support::metric_sum(&text, "otelcol_receiver_accepted_spans_total", &[]) > 0.0 {
            busy += 1;
        }
    }
    assert_eq!(busy, 3, "every gateway received spans after scaling");
    // Browser spans carry the browser collector's tag.
    let contents = read_file_exporter(&receiver.path("received.json"));
    let tagged = contents
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter(|rs| {
            rs.resource.as_ref().is_some_and(|r| {
                r.attributes.iter().any(|kv| {
                    kv.key == "telemetry.source" && format!("{:?}", kv.value).contains("browser")
                })
            })
        })
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum::<usize>();
    assert_eq!(tagged, 30, "browser spans tagged telemetry.source=browser");
    drop(gateways);
}
