//! `cargo xtask demo`: the telemetry plane on loopback.
//!
//! Builds the release binaries, then starts the three collectors with their
//! *embedded* role configs, adapted for one machine only through the same
//! mechanisms an operator has (`--set` overrides and a second `--config` file
//! merged on top):
//!
//! ```text
//!  otel-loadgen --grpc--> agent-collector  :24317 --otlp--> gateway-collector :14317 --> file + debug
//!  otel-loadgen --json--> browser-collector :34318 --otlp-/
//! ```
//!
//! It drives traffic through with the load generator (services `checkout`,
//! `cart` and `ollyscale-api`, 10% errors), waits until the gateway received
//! everything, decided every trace with the chart's tail-sampling policies
//! (decision_wait shortened to 2 s) and exported what it kept, prints what each
//! stage received and exported (from their own self-metrics), and leaves them
//! running until Ctrl-C (`--no-wait` stops them instead).
//!
//! The gateway's `opamp` extension talks to `opamp-test-server` (testkit's
//! OllyScale-like OpAMP server) on :14320, which prints the agent it sees,
//! edits the effective config the gateway reported (the batch timeout, as
//! an operator would in the UI), pushes it back, and prints the status the
//! gateway reports once the new pipelines run.

use crate::cmd;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Loopback ports of one collector.
struct Ports {
    grpc: u16,
    http: u16,
    metrics: u16,
    health: u16,
}

const GATEWAY: Ports = Ports {
    grpc: 14317,
    http: 14318,
    metrics: 18888,
    health: 13133,
};
const AGENT: Ports = Ports {
    grpc: 24317,
    http: 24318,
    metrics: 28888,
    health: 23133,
};
const BROWSER: Ports = Ports {
    grpc: 0,
    http: 34318,
    metrics: 38888,
    health: 33133,
};

/// Added on top of the gateway's embedded config: keep what it receives in a
/// file and print a summary, instead of exporting to OllyScale.
const GATEWAY_OVERLAY: &str = r#"
exporters:
  file/demo:
    path: ${env:DEMO_DIR}/gateway-received.json
  debug:
    verbosity: basic
service:
  pipelines:
    traces: {exporters: [file/demo, debug]}
    metrics: {exporters: [file/demo, debug]}
    logs: {exporters: [file/demo, debug]}
"#;

/// Children killed when the demo ends (or fails).
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The gateway decides sooner than the chart's 10 s, so the demo is quick,
/// and reports to the demo's OpAMP server.
const GATEWAY_SETS: [&str; 2] = [
    "processors.tail_sampling.decision_wait=2s",
    "extensions.opamp.server.ws.endpoint=ws://127.0.0.1:14320/v1/opamp",
];
/// Where the demo's OpAMP server listens.
const OPAMP_SERVER: &str = "127.0.0.1:14320";
/// What the demo's OpAMP server changes in the gateway's config.
const OPAMP_EDIT: &str = "processors.batch.timeout=1s";

/// Starts the OpAMP server; its output lines arrive on the returned channel.
fn start_opamp_server(
    processes: &mut Processes,
    bin: &Path,
) -> Result<std::sync::mpsc::Receiver<String>> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .args([
            "--ws",
            OPAMP_SERVER,
            "--heartbeat",
            "1",
            "--edit",
            OPAMP_EDIT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("opamp-test-server stdout")?;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    processes.0.push(("opamp-test-server".to_string(), child));
    Ok(received)
}

/// Prints the OpAMP server's lines until it reports the remote config's
/// final status.
fn show_opamp(lines: &std::sync::mpsc::Receiver<String>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .context("the OpAMP server reported no remote config status within 60s")?;
        println!("  {line}");
        if line.contains("remote config status") {
            return Ok(());
        }
    }
}

fn listen_sets(ports: &Ports) -> Vec<String> {
    let mut sets = Vec::new();
    if ports.grpc != 0 {
        sets.push(format!(
            "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{}",
            ports.grpc
        ));
    }
    sets.push(format!(
        "receivers.otlp.protocols.http.endpoint=127.0.0.1:{}",
        ports.http
    ));
    sets.push(format!(
        "service.telemetry.metrics.address=127.0.0.1:{}",
        ports.metrics
    ));
    sets.push(format!(
        "extensions.health_check.endpoint=127.0.0.1:{}",
        ports.health
    ));
    sets
}

fn start(
    processes: &mut Processes,
    dir: &Path,
    bin: &Path,
    role: &str,
    configs: &[PathBuf],
    sets: &[String],
) -> Result<()> {
    let log = fs::File::create(dir.join(format!("{role}.log")))?;
    let mut command = Command::new(bin);
    for config in configs {
        command.arg("--config").arg(config);
    }
    for set in sets {
        command.arg("--set").arg(set);
    }
    command
        .env("DEMO_DIR", dir)
        // The loadbalancing exporter resolves the gateways' "headless Service":
        // here, the one local gateway.
        .env("GATEWAY_HEADLESS_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", GATEWAY.grpc.to_string());
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    processes.0.push((role.to_string(), child));
    Ok(())
}

/// One HTTP/1.1 GET on loopback; the status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn wait_healthy(processes: &mut Processes, dir: &Path, port: u16, role: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(http_get(port, "/"), Some((200, _))) {
            return Ok(());
        }
        for (name, child) in &mut processes.0 {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                bail!("{name} exited ({status}) during start-up:\n{log}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{role} did not become healthy on port {port} within 30s (see {}/{role}.log)",
        dir.display()
    )
}

/// Sum of a metric's series whose label text contains every `label`.
fn metric(port: u16, name: &str, labels: &[&str]) -> f64 {
    let Some((_, text)) = http_get(port, "/metrics") else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

fn loadgen(bin: &Path, args: &[&str]) -> Result<String> {
    let output = cmd::run_captured(Command::new(bin).args(args))?;
    Ok(output.trim().to_string())
}

/// Runs the demo.
pub(crate) fn run(no_wait: bool) -> Result<()> {
    let root = paths::repo_root();
    println!("demo: building release binaries (first time: a few minutes)");
    cmd::run_inherited(cmd::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "collector",
        "-p",
        "loadgen",
        "-p",
        "testkit",
    ]))?;
    let bin = root.join("target/release");
    let dir = root.join("target/demo");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;

    // The gateway's embedded default, plus the overlay merged on top of it.
    let gateway_default = dir.join("gateway-default.yaml");
    let printed =
        cmd::run_captured(Command::new(bin.join("gateway-collector")).arg("print-default-config"))?;
    fs::write(&gateway_default, printed)?;
    let overlay = dir.join("gateway-overlay.yaml");
    fs::write(&overlay, GATEWAY_OVERLAY)?;

    let mut processes = Processes(Vec::new());
    let opamp_lines = start_opamp_server(&mut processes, &bin.join("opamp-test-server"))?;
    start(
        &mut processes,
        &dir,
        &bin.join("gateway-collector"),
        "gateway",
        &[gateway_default, overlay],
        &[
            listen_sets(&GATEWAY),
            GATEWAY_SETS.iter().map(|s| s.to_string()).collect(),
        ]
        .concat(),
    )?;
    wait_healthy(&mut processes, &dir, GATEWAY.health, "gateway")?;
    start(
        &mut processes,
        &dir,
        &bin.join("agent-collector"),
        "agent",
        &[],
        &listen_sets(&AGENT),
    )?;
    start(
        &mut processes,
        &dir,
        &bin.join("browser-collector"),
        "browser",
        &[],
        &listen_sets(&BROWSER),
    )?;
    wait_healthy(&mut processes, &dir, AGENT.health, "agent")?;
    wait_healthy(&mut processes, &dir, BROWSER.health, "browser")?;
    println!("demo: the gateway and the OpAMP server (OllyScale's side, on {OPAMP_SERVER}):");
    show_opamp(&opamp_lines)?;
    println!(
        "demo: gateway :{} <- agent :{} (gRPC) and browser :{} (HTTP); logs in {}",
        GATEWAY.grpc,
        AGENT.grpc,
        BROWSER.http,
        dir.display()
    );

    let loadgen_bin = bin.join("otel-loadgen");
    let agent = format!("127.0.0.1:{}", AGENT.grpc);
    let browser = format!("http://127.0.0.1:{}", BROWSER.http);
    println!(
        "demo: sending 3 s of traces (5,000 spans/s, 10% errors), metrics and logs to the agent, and browser spans as OTLP/JSON"
    );
    let runs = [
        loadgen(
            &loadgen_bin,
            &[
                "--endpoint",
                &agent,
                "--rate",
                "5000",
                "--duration",
                "3s",
                "--services",
                "checkout,cart,ollyscale-api",
                "--error-ratio",
                "0.1",
            ],
        )?,
        loadgen(
            &loadgen_bin,
            &[
                "--endpoint",
                &agent,
                "--signal",
                "metrics",
                "--rate",
                "1000",
                "--duration",
                "1s",
            ],
        )?,
        loadgen(
            &loadgen_bin,
            &[
                "--endpoint",
                &agent,
                "--signal",
                "logs",
                "--rate",
                "1000",
                "--duration",
                "1s",
            ],
        )?,
        loadgen(
            &loadgen_bin,
            &[
                "--endpoint",
                &browser,
                "--protocol",
                "http/json",
                "--rate",
                "500",
                "--duration",
                "2s",
                "--items-per-request",
                "10",
                "--services",
                "web-frontend",
            ],
        )?,
    ];
    for line in &runs {
        println!("  loadgen: {line}");
    }

    // Wait until the gateway got everything the edges accepted (the agent
    // batches for up to 5 s, as the chart's config says), decided every trace
    // (tail sampling), and exported what it kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    let wait = |done: &dyn Fn() -> bool| {
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    for suffix in ["spans", "metric_points", "log_records"] {
        let accepted = format!("otelcol_receiver_accepted_{suffix}_total");
        let at_edges =
            metric(AGENT.metrics, &accepted, &[]) + metric(BROWSER.metrics, &accepted, &[]);
        wait(&|| metric(GATEWAY.metrics, &accepted, &[]) >= at_edges);
    }
    wait(&|| {
        metric(
            GATEWAY.metrics,
            "otelcol_processor_tail_sampling_sampling_traces_on_memory",
            &[],
        ) == 0.0
    });
    for (signal, suffix) in [
        ("traces", "spans"),
        ("metrics", "metric_points"),
        ("logs", "log_records"),
    ] {
        let into_batch = format!("otel_signal=\"{signal}\"");
        let sent = format!("otelcol_exporter_sent_{suffix}_total");
        wait(&|| {
            metric(GATEWAY.metrics, &sent, &["exporter=\"file/demo\""])
                >= metric(
                    GATEWAY.metrics,
                    "otelcol_processor_incoming_items_total",
                    &["processor=\"batch\"", &into_batch],
                )
        });
    }

    println!();
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "stage", "received", "refused", "exported", "failed", "signal"
    );
    for (role, port, exporter) in [
        ("agent", AGENT.metrics, "loadbalancing/gateway"),
        ("browser", BROWSER.metrics, "loadbalancing/gateway"),
        ("gateway", GATEWAY.metrics, "file/demo"),
    ] {
        for (signal, suffix) in [
            ("spans", "spans"),
            ("metrics", "metric_points"),
            ("logs", "log_records"),
        ] {
            let received = metric(
                port,
                &format!("otelcol_receiver_accepted_{suffix}_total"),
                &[],
            );
            if received == 0.0 {
                continue;
            }
            let refused = metric(
                port,
                &format!("otelcol_receiver_refused_{suffix}_total"),
                &[],
            );
            let exporter_label = format!("exporter=\"{exporter}\"");
            let sent = metric(
                port,
                &format!("otelcol_exporter_sent_{suffix}_total"),
                &[&exporter_label],
            );
            let failed = metric(
                port,
                &format!("otelcol_exporter_send_failed_{suffix}_total"),
                &[&exporter_label],
            );
            println!(
                "{role:<10} {received:>10} {refused:>10} {sent:>10} {failed:>10} {signal:>12}"
            );
        }
    }
    let sampled = metric(
        GATEWAY.metrics,
        "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
        &["sampled=\"true\""],
    );
    let not_sampled = metric(
        GATEWAY.metrics,
        "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
        &["sampled=\"false\""],
    );
    println!(
        "\ngateway tail sampling (the chart's policies): kept {sampled} of {} traces (errors, non-ollyscale services, 5% of ollyscale-* successes)",
        sampled + not_sampled
    );
    let rss: Vec<String> = [
        ("agent", AGENT.metrics),
        ("browser", BROWSER.metrics),
        ("gateway", GATEWAY.metrics),
    ]
    .iter()
    .map(|(role, port)| {
        format!(
            "{role} {:.1} MiB",
            metric(*port, "otelcol_process_memory_rss", &[]) / 1048576.0
        )
    })
    .collect();
    println!("\nRSS: {}", rss.join(", "));
    println!(
        "the gateway's file sink: {}",
        dir.join("gateway-received.json").display()
    );
    println!(
        "self-metrics: http://127.0.0.1:{{{},{},{}}}/metrics",
        AGENT.metrics, BROWSER.metrics, GATEWAY.metrics
    );

    if no_wait {
        return Ok(());
    }
    println!("\nthe collectors keep running; Ctrl-C stops them");
    for (_, child) in &mut processes.0 {
        let _ = child.wait();
    }
    Ok(())
}
