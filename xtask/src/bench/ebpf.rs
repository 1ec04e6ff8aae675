//! The eBPF agent (`--only ebpf`; needs root): `ebpf-http-bench serve` (a
//! hyper server) on a loopback port, loaded by `ebpf-http-bench load` (8
//! keep-alive connections, requests due on a fixed schedule) at each of
//! [`RATES`] for `--duration`: first with no agent, then with `ebpf-agent`
//! instrumenting the server and exporting its spans over OTLP/gRPC
//! (`compression: none`) to the counting sink.
//!
//! `kernel.bpf_stats_enabled` is set to 1 for the run (and restored), so the
//! kernel measures the probes; the agent exports those figures as
//! `otelcol_ebpf_probe_run_time_ns` / `otelcol_ebpf_probe_runs`. Printed per
//! rate: latency p50/p99 without and with the agent, the probes' kernel time
//! per request (all their runs, on every syscall of every process, divided
//! by the requests), the agent's CPU-seconds per million requests, its RSS
//! (after the step) and peak RSS, spans delivered per request answered, and
//! the kernel events lost. Targets: under 300 ns of probe time per request,
//! under 40 MiB RSS, nothing lost at 20,000 requests/s.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::children::{ChildGuard, pause};
use super::gateway::Scrape;
use super::probe::{
    clock_ticks_per_second, cpu_ticks, free_address, http_get, peak_rss_bytes, rss_bytes,
};
use super::report::Json;
use super::{Bench, START_TIMEOUT, with_fresh_ports};

/// Request rates measured, per second.
pub(crate) const RATES: [u64; 3] = [1_000, 5_000, 20_000];
/// Connections of the load client.
const CONNECTIONS: u64 = 8;
/// How long the agent may take to export a step's last spans.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// What `ebpf-http-bench load` reported.
#[derive(Clone, Debug, Default)]
pub(crate) struct Load {
    sent: u64,
    ok: u64,
    failed: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Load {
    fn parse(text: &str) -> Result<Load> {
        let field = |key: &str| {
            super::probe::json_number(text, key)
                .with_context(|| format!("no {key} in the load report {text:?}"))
        };
        Ok(Load {
            sent: field("sent")? as u64,
            ok: field("ok")? as u64,
            failed: field("failed")? as u64,
            seconds: field("seconds")?,
            p50_us: field("p50_us")? as u64,
            p99_us: field("p99_us")? as u64,
        })
    }

    fn json(&self) -> Json {
        Json::Object(vec![
            ("sent", Json::Int(self.sent)),
            ("ok", Json::Int(self.ok)),
            ("failed", Json::Int(self.failed)),
            (
                "requests_per_second",
                Json::float(self.ok as f64 / self.seconds),
            ),
            ("p50_us", Json::Int(self.p50_us)),
            ("p99_us", Json::Int(self.p99_us)),
        ])
    }
}

/// One rate, without and with the agent.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    rate: u64,
    plain: Load,
    traced: Load,
    agent_cpu_seconds: f64,
    rss: u64,
    peak_rss: u64,
    probe_ns: u64,
    probe_runs: u64,
    spans: u64,
    lost: u64,
}

impl Step {
    fn probe_ns_per_request(&self) -> f64 {
        self.probe_ns as f64 / self.traced.ok.max(1) as f64
    }

    fn cpu_per_million(&self) -> f64 {
        self.agent_cpu_seconds * 1e6 / self.traced.ok.max(1) as f64
    }
}

/// The section's outcome.
#[derive(Debug)]
pub(crate) struct EbpfResult {
    steps: Result<Vec<Step>, String>,
}

pub(crate) fn describe() -> String {
    format!(
        "ebpf-agent instrumenting ebpf-http-bench serve (hyper) on loopback; ebpf-http-bench load, \
         {CONNECTIONS} keep-alive connections, at {RATES:?} requests/s; spans over OTLP/gRPC to the sink"
    )
}

/// Sets `kernel.bpf_stats_enabled` and puts the old value back when dropped.
struct BpfStats {
    previous: String,
}

impl BpfStats {
    fn enable() -> Result<BpfStats> {
        let previous =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, self.previous.trim());
    }
}

fn agent_config(port: u16, sink: SocketAddr, metrics: SocketAddr) -> String {
    format!(
        r#"
receivers:
  ebpf:
    open_ports: "{port}"
    metrics:
      enabled: false
processors:
  batch: {{}}
exporters:
  otlp:
    endpoint: {sink}
    tls: {{insecure: true}}
    compression: none
service:
  telemetry:
    metrics:
      address: {metrics}
  pipelines:
    traces:
      receivers: [ebpf]
      processors: [batch]
      exporters: [otlp]
"#
    )
}

struct Agent {
    guard: ChildGuard,
    metrics: SocketAddr,
}

impl Agent {
    fn scrape(&mut self) -> Result<Scrape> {
        self.guard.check_running()?;
        Ok(Scrape::parse(&http_get(self.metrics, "/metrics")?))
    }
}

fn load(bench: &Bench<'_>, name: &str, server: SocketAddr, rate: u64) -> Result<Load> {
    let log = bench.layout.log(name);
    let mut command = Command::new(&bench.layout.http_bench);
    command.args([
        "load",
        "--target",
        &server.to_string(),
        "--rate",
        &rate.to_string(),
        "--duration",
        &format!("{}ms", bench.settings.duration.as_millis()),
        "--connections",
        &CONNECTIONS.to_string(),
    ]);
    let mut guard = ChildGuard::spawn(name, &mut command, &log)?;
    let deadline = Instant::now() + bench.settings.duration + START_TIMEOUT;
    while guard.try_exit()?.is_none() {
        if Instant::now() >= deadline {
            bail!(
                "{name} did not finish; end of its log:\n{}",
                guard.log_tail()
            );
        }
        pause()?;
    }
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    Load::parse(text.lines().last().unwrap_or_default())
}

fn start_agent(bench: &Bench<'_>, port: u16) -> Result<Agent> {
    let sink = bench.sink.grpc;
    with_fresh_ports("ebpf-agent", || {
        let metrics = free_address()?;
        let config = bench.layout.out_dir.join("ebpf-agent.yaml");
        std::fs::write(&config, agent_config(port, sink, metrics))
            .with_context(|| format!("writing {}", config.display()))?;
        let mut command = Command::new(&bench.layout.ebpf_agent);
        command.arg("--config").arg(&config);
        let mut guard =
            ChildGuard::spawn("ebpf-agent", &mut command, &bench.layout.log("ebpf-agent"))?;
        guard.wait_listening(metrics, START_TIMEOUT)?;
        let mut agent = Agent { guard, metrics };
        // Listening on metrics means started: the probes are attached and the
        // server selected (the first scan runs before start-up ends).
        let selected = agent
            .scrape()?
            .sum("otelcol_ebpf_instrumented_processes", &[]);
        if selected < 1.0 {
            bail!("the agent did not select the server on port {port}");
        }
        Ok(agent)
    })
}

fn measure(bench: &mut Bench<'_>) -> Result<Vec<Step>> {
    if !Path::new(&bench.layout.ebpf_agent).exists() {
        bail!("{} is missing", bench.layout.ebpf_agent.display());
    }
    let _stats = BpfStats::enable().context("the eBPF section needs root")?;
    let server_address = free_address()?;
    let mut server_command = Command::new(&bench.layout.http_bench);
    server_command
        .args(["serve", "--listen"])
        .arg(server_address.to_string());
    let mut server = ChildGuard::spawn(
        "ebpf-http-bench serve",
        &mut server_command,
        &bench.layout.log("ebpf-http-server"),
    )?;
    server.wait_listening(server_address, START_TIMEOUT)?;

    let mut plain = Vec::new();
    for rate in RATES {
        eprintln!("bench: ebpf: {rate} requests/s without the agent");
        plain.push(load(
            bench,
            &format!("ebpf-load-{rate}-plain"),
            server_address,
            rate,
        )?);
    }

    let mut agent = start_agent(bench, server_address.port())?;
    let pid = agent.guard.pid();
    let ticks = clock_ticks_per_second();
    let mut steps = Vec::new();
    for (rate, plain) in RATES.into_iter().zip(plain) {
        eprintln!("bench: ebpf: {rate} requests/s with the agent");
        let before = agent.scrape()?;
        let sink_before = bench.sink.counts()?;
        let cpu_before = cpu_ticks(pid)?;
        let traced = load(
            bench,
            &format!("ebpf-load-{rate}-traced"),
            server_address,
            rate,
        )?;
        // The agent exports within its flush interval and batch timeout.
        let deadline = Instant::now() + SETTLE_LIMIT;
        let sink = loop {
            let sink = bench.sink.counts()?.since(&sink_before);
            if sink.spans >= traced.ok || Instant::now() >= deadline {
                break sink;
            }
            pause()?;
        };
        // The agent mirrors the kernel's counters once per scan interval:
        // wait for the next update, so the step's last runs are in.
        let runs = agent.scrape()?.sum("otelcol_ebpf_probe_runs", &[]);
        let deadline = Instant::now() + SETTLE_LIMIT;
        let after = loop {
            let scrape = agent.scrape()?;
            if scrape.sum("otelcol_ebpf_probe_runs", &[]) != runs || Instant::now() >= deadline {
                break scrape;
            }
            pause()?;
        };
        let delta = |name: &str| (after.sum(name, &[]) - before.sum(name, &[])).max(0.0) as u64;
        steps.push(Step {
            rate,
            plain,
            traced,
            agent_cpu_seconds: cpu_ticks(pid)?.saturating_sub(cpu_before) as f64 / ticks,
            rss: rss_bytes(pid)?,
            peak_rss: peak_rss_bytes(pid)?,
            probe_ns: delta("otelcol_ebpf_probe_run_time_ns"),
            probe_runs: delta("otelcol_ebpf_probe_runs"),
            spans: sink.spans,
            lost: delta("otelcol_ebpf_kernel_events_lost"),
        });
    }
    Ok(steps)
}

/// Runs the section; a failure is reported in the results, not raised.
pub(crate) fn run(bench: &mut Bench<'_>) -> Result<EbpfResult> {
    eprintln!("bench: ebpf: {}", describe());
    let steps = measure(bench).map_err(|e| {
        eprintln!("bench: ebpf: failed: {e:#}");
        format!("{e:#}")
    });
    super::children::check_interrupted()?;
    Ok(EbpfResult { steps })
}

pub(crate) fn table(result: &EbpfResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\neBPF agent: {}", describe());
    match &result.steps {
        Err(e) => {
            let _ = writeln!(out, "  not measured: {e}");
        }
        Ok(steps) => {
            let _ = writeln!(
                out,
                "| requests/s (done) | p50 / p99 without | p50 / p99 with agent | probe ns / request | agent CPU-s / M requests | agent RSS (peak) | spans / requests | kernel events lost |"
            );
            let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
            for s in steps {
                let done = s.traced.ok as f64 / s.traced.seconds;
                let _ = writeln!(
                    out,
                    "| {} ({:.0}) | {} / {} µs | {} / {} µs | {:.0} ({:.1} runs) | {:.2} | {:.1} MiB ({:.1}) | {} / {} | {} |",
                    s.rate,
                    done,
                    s.plain.p50_us,
                    s.plain.p99_us,
                    s.traced.p50_us,
                    s.traced.p99_us,
                    s.probe_ns_per_request(),
                    s.probe_runs as f64 / s.traced.ok.max(1) as f64,
                    s.cpu_per_million(),
                    s.rss as f64 / (1 << 20) as f64,
                    s.peak_rss as f64 / (1 << 20) as f64,
                    s.spans,
                    s.traced.ok,
                    s.lost,
                );
            }
        }
    }
    out
}

pub(crate) fn json(result: &EbpfResult) -> Json {
    match &result.steps {
        Err(e) => Json::Object(vec![
            ("status", Json::Str("failed".into())),
            ("error", Json::Str(e.clone())),
        ]),
        Ok(steps) => Json::Object(vec![
            ("status", Json::Str("measured".into())),
            ("description", Json::Str(describe())),
            (
                "steps",
                Json::Array(
                    steps
                        .iter()
                        .map(|s| {
                            Json::Object(vec![
                                ("rate", Json::Int(s.rate)),
                                ("without_agent", s.plain.json()),
                                ("with_agent", s.traced.json()),
                                (
                                    "probe_ns_per_request",
                                    Json::float(s.probe_ns_per_request()),
                                ),
                                ("probe_runs", Json::Int(s.probe_runs)),
                                (
                                    "agent_cpu_seconds_per_million",
                                    Json::float(s.cpu_per_million()),
                                ),
                                ("agent_rss_bytes", Json::Int(s.rss)),
                                ("agent_peak_rss_bytes", Json::Int(s.peak_rss)),
                                ("spans_delivered", Json::Int(s.spans)),
                                ("kernel_events_lost", Json::Int(s.lost)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
    }
}
