//! The eBPF agent (`--only ebpf`; needs root): `ebpf-http-bench serve` (a
//! hyper server) on a loopback port, loaded by `ebpf-http-bench load` (8
//! keep-alive connections, requests due on a fixed schedule) at each of
//! [`RATES`] for `--duration`: first with no agent, then with `ebpf-agent`
//! selecting nothing (its port filter names a port no one listens on), then
//! with `ebpf-agent` instrumenting the server and exporting its spans over
//! OTLP/gRPC (`compression: none`) to the counting sink.
//!
//! Two costs, measured in the same run:
//!
//! - The **node tax**: what the probes cost a process they do not trace.
//!   `ebpf-http-bench syscalls` (one-byte reads and writes, as `dd bs=1`)
//!   reports its CPU ns per syscall with no agent, with the agent selecting
//!   nothing and with the agent selecting the server (another process).
//!   Target: under [`TARGET_NODE_TAX_NS`] added.
//!   `kernel.bpf_stats_enabled` is off for these loops (its clock reads
//!   would be counted in the tax).
//! - The **per-request cost** on the selected server: the probes' kernel
//!   time during a step with the server selected minus what the same runs
//!   cost with nothing selected (the unselected step's time per run), per
//!   request. Targets: [`TARGET_REQUEST_NS`].
//!
//! `kernel.bpf_stats_enabled` is set to 1 for the run (and restored), so the
//! kernel measures the probes; the agent exports those figures as
//! `otelcol_ebpf_probe_run_time_ns` / `otelcol_ebpf_probe_runs`. Printed per
//! rate: latency p50/p99 without and with the agent, the probes' kernel time
//! per request (all their runs, on every syscall of every process, divided
//! by the requests), the agent's CPU-seconds per million requests, its RSS
//! (after the step) and peak RSS, spans delivered per request answered, and
//! the kernel events lost. Targets: under 300 ns of probe time per request,
//! under 40 MiB RSS, nothing lost at 20,000 requests/s; under
//! [`TARGET_IDLE_RSS_MIB`] RSS idle (the default build, fresh agent).
//!
//! The p99 latency the agent adds at 5,000/s is measured apart, in
//! alternating pairs against an untraced twin server with the agent
//! running ([`latency`]): the rate steps' "without" and "with" runs are
//! minutes apart, and their p99s move more than the target between runs.
//!
//! Then candidate hook designs, measured the same way ([`candidate`]):
//! socket-level hooks and a TC classifier, which run only for the server's
//! traffic.

mod candidate;
mod latency;

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
use super::report::{Json, verdict};
use super::{Bench, START_TIMEOUT, with_fresh_ports};

/// Request rates measured, per second.
pub(crate) const RATES: [u64; 3] = [1_000, 5_000, 20_000];
/// Node tax target: ns added to each syscall of an unselected process.
const TARGET_NODE_TAX_NS: f64 = 40.0;
/// Per-request probe time targets, ns, by rate.
const TARGET_REQUEST_NS: [(u64, f64); 2] = [(1_000, 600.0), (20_000, 300.0)];
/// Added p99 latency target at 5,000 requests/s, µs.
const TARGET_ADDED_P99_US: u64 = 50;
/// The agent's probe programs (the `program` label of its run metrics).
const PROGRAMS: [&str; 2] = ["sys_enter", "sys_exit"];
/// Rate at which the runtime and allocator variants are compared.
const VARIANT_RATE: u64 = 20_000;
/// Which agent binary a variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Build {
    /// `cargo build --release -p ebpf-agent`: the default features (mimalloc,
    /// with the options `main` sets).
    Default,
    /// The same with `--no-default-features` (glibc's allocator, 1 arena),
    /// built by the bench before the default build and kept as
    /// `ebpf-agent-glibc` (a global allocator is chosen at link time, not at
    /// run time).
    Glibc,
}

/// Environment variables set for a variant.
type Env = &'static [(&'static str, &'static str)];

/// The agent's runtime and allocator settings compared side by side at
/// [`VARIANT_RATE`]: a name, the binary and the environment that selects it.
/// The first is the default build as shipped (its idle RSS is checked
/// against [`TARGET_IDLE_RSS_MIB`]).
const VARIANTS: [(&str, Build, Env); 6] = [
    (
        "default build (mimalloc, purge delay 0, no arena eager commit, set at load)",
        Build::Default,
        &[],
    ),
    (
        "default build, the same options as MIMALLOC_PURGE_DELAY=0 MIMALLOC_ARENA_EAGER_COMMIT=0",
        Build::Default,
        &[
            ("MIMALLOC_PURGE_DELAY", "0"),
            ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ],
    ),
    (
        "default build, mimalloc's defaults (MIMALLOC_PURGE_DELAY=1000 MIMALLOC_ARENA_EAGER_COMMIT=2)",
        Build::Default,
        &[
            ("MIMALLOC_PURGE_DELAY", "1000"),
            ("MIMALLOC_ARENA_EAGER_COMMIT", "2"),
        ],
    ),
    (
        "default build, 1 worker thread",
        Build::Default,
        &[("TOKIO_WORKER_THREADS", "1")],
    ),
    ("glibc build (1 arena)", Build::Glibc, &[]),
    (
        "glibc build, MALLOC_TRIM_THRESHOLD_=MALLOC_MMAP_THRESHOLD_=128 KiB",
        Build::Glibc,
        &[
            ("MALLOC_TRIM_THRESHOLD_", "131072"),
            ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ],
    ),
];
/// Idle RSS target of the default build, MiB.
const TARGET_IDLE_RSS_MIB: f64 = 30.0;
/// Syscall pairs per round of the node-tax loop.
const SYSCALL_PAIRS: u64 = 1_000_000;
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

/// CPU ns per syscall of `ebpf-http-bench syscalls`, in three settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NodeTax {
    no_agent: f64,
    nothing_selected: f64,
    other_selected: f64,
}

impl NodeTax {
    fn added(&self) -> f64 {
        self.nothing_selected.max(self.other_selected) - self.no_agent
    }
}

/// One rate, without and with the agent.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    rate: u64,
    plain: Load,
    traced: Load,
    /// Probe kernel time and runs in the same step with nothing selected.
    unselected_probe_ns: u64,
    unselected_probe_runs: u64,
    agent_cpu_seconds: f64,
    rss: u64,
    peak_rss: u64,
    probe_ns: u64,
    probe_runs: u64,
    spans: u64,
    lost: u64,
    /// Per probe program: name, kernel ns and runs during the step.
    programs: Vec<(&'static str, u64, u64)>,
}

impl Step {
    /// All probe time during the step, every process's syscalls, per request.
    fn probe_ns_per_request(&self) -> f64 {
        self.probe_ns as f64 / self.traced.ok.max(1) as f64
    }

    /// The probe time the selected server adds, per request: the step's
    /// probe time minus what its runs would have cost unselected (the
    /// unselected step's time per run, times this step's runs). Per run,
    /// not per step, so that other processes' syscalls, which are as many
    /// runs at the unselected cost in both, cancel out even when the
    /// machine is not quiet.
    fn attributable_ns_per_request(&self) -> f64 {
        let unselected_per_run =
            self.unselected_probe_ns as f64 / self.unselected_probe_runs.max(1) as f64;
        (self.probe_ns as f64 - unselected_per_run * self.probe_runs as f64)
            / self.traced.ok.max(1) as f64
    }

    fn cpu_per_million(&self) -> f64 {
        self.agent_cpu_seconds * 1e6 / self.traced.ok.max(1) as f64
    }
}

/// One runtime or allocator variant at [`VARIANT_RATE`], in a fresh agent.
#[derive(Clone, Debug)]
pub(crate) struct Variant {
    name: &'static str,
    requests: u64,
    agent_cpu_seconds: f64,
    /// Right after start-up, before any load.
    idle_rss: u64,
    rss: u64,
    peak_rss: u64,
    threads: u64,
}

impl Variant {
    fn cpu_per_million(&self) -> f64 {
        self.agent_cpu_seconds * 1e6 / self.requests.max(1) as f64
    }
}

/// What the section measured.
#[derive(Debug)]
pub(crate) struct Measured {
    tax: NodeTax,
    steps: Vec<Step>,
    /// The added latency, measured in pairs (see [`latency`]).
    latency: Result<latency::Latency, String>,
    variants: Vec<Variant>,
    /// The hook candidates, or why each could not be measured.
    candidates: Vec<Result<candidate::Candidate, String>>,
}

/// The section's outcome.
#[derive(Debug)]
pub(crate) struct EbpfResult {
    steps: Result<Measured, String>,
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
        Self::set("1")
    }

    fn set(value: &str) -> Result<BpfStats> {
        let previous =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, value).with_context(|| format!("writing {BPF_STATS}"))?;
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
    Load::parse(&load_with(bench, name, server, rate, &[])?)
}

/// Runs `ebpf-http-bench load` with `extra` arguments; its report line.
fn load_with(
    bench: &Bench<'_>,
    name: &str,
    server: SocketAddr,
    rate: u64,
    extra: &[&str],
) -> Result<String> {
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
    command.args(extra);
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
    Ok(text.lines().last().unwrap_or_default().to_string())
}

/// Starts the agent with `port` as its port filter; `expect_selected` says
/// whether a process listens there.
fn start_agent(bench: &Bench<'_>, port: u16, expect_selected: bool) -> Result<Agent> {
    start_agent_with(bench, Build::Default, port, expect_selected, &[])
}

/// [`start_agent`] with another build and extra environment variables.
fn start_agent_with(
    bench: &Bench<'_>,
    build: Build,
    port: u16,
    expect_selected: bool,
    env: &[(&str, &str)],
) -> Result<Agent> {
    let sink = bench.sink.grpc;
    with_fresh_ports("ebpf-agent", || {
        let metrics = free_address()?;
        let config = bench.layout.out_dir.join("ebpf-agent.yaml");
        std::fs::write(&config, agent_config(port, sink, metrics))
            .with_context(|| format!("writing {}", config.display()))?;
        let binary = match build {
            Build::Default => &bench.layout.ebpf_agent,
            Build::Glibc => &bench.layout.ebpf_agent_glibc,
        };
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied());
        let mut guard =
            ChildGuard::spawn("ebpf-agent", &mut command, &bench.layout.log("ebpf-agent"))?;
        guard.wait_listening(metrics, START_TIMEOUT)?;
        let mut agent = Agent { guard, metrics };
        // Listening on metrics means started: the probes are attached and the
        // server selected (the first scan runs before start-up ends).
        let selected = agent
            .scrape()?
            .sum("otelcol_ebpf_instrumented_processes", &[]);
        if expect_selected && selected < 1.0 {
            bail!("the agent did not select the server on port {port}");
        }
        if !expect_selected && selected > 0.0 {
            bail!(
                "the agent selected {selected} process(es) on port {port}, which no one should listen on"
            );
        }
        Ok(agent)
    })
}

/// Starts `ebpf-http-bench serve` (the hyper server) on `address`, logging
/// to `log`, and waits until it listens.
fn start_server(bench: &Bench<'_>, address: SocketAddr, log: &str) -> Result<ChildGuard> {
    let mut command = Command::new(&bench.layout.http_bench);
    command.args(["serve", "--listen"]).arg(address.to_string());
    let mut server = ChildGuard::spawn(
        "ebpf-http-bench serve",
        &mut command,
        &bench.layout.log(log),
    )?;
    server.wait_listening(address, START_TIMEOUT)?;
    Ok(server)
}

fn measure(bench: &mut Bench<'_>) -> Result<Measured> {
    if !Path::new(&bench.layout.ebpf_agent).exists() {
        bail!("{} is missing", bench.layout.ebpf_agent.display());
    }
    let _stats = BpfStats::enable().context("the eBPF section needs root")?;
    let server_address = free_address()?;
    let _server = start_server(bench, server_address, "ebpf-http-server")?;

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

    let no_agent = syscall_cost(bench)?;

    // Nothing selected: the filter's cost alone, on every process.
    let unused = free_address()?.port();
    let mut idle = start_agent(bench, unused, false)?;
    let nothing_selected = syscall_cost(bench)?;
    let mut unselected = Vec::new();
    for rate in RATES {
        eprintln!("bench: ebpf: {rate} requests/s, the agent selecting nothing");
        let before = idle.scrape()?;
        load(
            bench,
            &format!("ebpf-load-{rate}-unselected"),
            server_address,
            rate,
        )?;
        let after = next_run_stats(&mut idle)?;
        let delta = |name: &str| (after.sum(name, &[]) - before.sum(name, &[])).max(0.0) as u64;
        unselected.push((
            delta("otelcol_ebpf_probe_run_time_ns"),
            delta("otelcol_ebpf_probe_runs"),
        ));
    }
    drop(idle);

    let mut agent = start_agent(bench, server_address.port(), true)?;
    let other_selected = syscall_cost(bench)?;
    let pid = agent.guard.pid();
    let ticks = clock_ticks_per_second();
    let mut steps = Vec::new();
    for ((rate, plain), (unselected_ns, unselected_runs)) in
        RATES.into_iter().zip(plain).zip(unselected)
    {
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
        let after = next_run_stats(&mut agent)?;
        let delta = |name: &str| (after.sum(name, &[]) - before.sum(name, &[])).max(0.0) as u64;
        steps.push(Step {
            rate,
            plain,
            traced,
            unselected_probe_ns: unselected_ns,
            unselected_probe_runs: unselected_runs,
            agent_cpu_seconds: cpu_ticks(pid)?.saturating_sub(cpu_before) as f64 / ticks,
            rss: rss_bytes(pid)?,
            peak_rss: peak_rss_bytes(pid)?,
            probe_ns: delta("otelcol_ebpf_probe_run_time_ns"),
            probe_runs: delta("otelcol_ebpf_probe_runs"),
            spans: sink.spans,
            lost: delta("otelcol_ebpf_kernel_events_lost"),
            programs: PROGRAMS
                .into_iter()
                .map(|program| {
                    let labels = [("program", program)];
                    let delta = |name: &str| {
                        (after.sum(name, &labels) - before.sum(name, &labels)).max(0.0) as u64
                    };
                    (
                        program,
                        delta("otelcol_ebpf_probe_run_time_ns"),
                        delta("otelcol_ebpf_probe_runs"),
                    )
                })
                .collect(),
        });
    }
    let latency = latency::measure(bench, server_address).map_err(|e| {
        eprintln!("bench: ebpf: the latency pairs failed: {e:#}");
        format!("{e:#}")
    });
    drop(agent);
    let tax = NodeTax {
        no_agent,
        nothing_selected,
        other_selected,
    };
    let mut variants = Vec::new();
    for (name, build, env) in VARIANTS {
        eprintln!("bench: ebpf: {VARIANT_RATE} requests/s with the agent, {name}");
        let agent = start_agent_with(bench, build, server_address.port(), true, env)?;
        let pid = agent.guard.pid();
        let idle_rss = rss_bytes(pid)?;
        let cpu_before = cpu_ticks(pid)?;
        let traced = load(
            bench,
            &format!("ebpf-load-variant-{}", variants.len()),
            server_address,
            VARIANT_RATE,
        )?;
        variants.push(Variant {
            name,
            requests: traced.ok,
            agent_cpu_seconds: cpu_ticks(pid)?.saturating_sub(cpu_before) as f64 / ticks,
            idle_rss,
            rss: rss_bytes(pid)?,
            peak_rss: peak_rss_bytes(pid)?,
            threads: thread_count(pid)?,
        });
    }
    let plain: Vec<(u64, Load)> = steps.iter().map(|s| (s.rate, s.plain.clone())).collect();
    let candidates = candidate::measure(bench, server_address, &plain);
    Ok(Measured {
        tax,
        steps,
        latency,
        variants,
        candidates,
    })
}

/// Threads of a process (`Threads:` in /proc/PID/status).
fn thread_count(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no Threads: in {path}"))
}

/// The agent mirrors the kernel's run counters once per scan interval:
/// waits for the next update, so a step's last runs are in.
fn next_run_stats(agent: &mut Agent) -> Result<Scrape> {
    let runs = agent.scrape()?.sum("otelcol_ebpf_probe_runs", &[]);
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let scrape = agent.scrape()?;
        if scrape.sum("otelcol_ebpf_probe_runs", &[]) != runs || Instant::now() >= deadline {
            return Ok(scrape);
        }
        pause()?;
    }
}

/// `ebpf-http-bench syscalls`: CPU ns per syscall of a process the agent
/// does not trace. With `kernel.bpf_stats_enabled` off for the loop: the
/// kernel's run statistics read the clock twice per program run, which
/// production nodes do not pay.
fn syscall_cost(bench: &Bench<'_>) -> Result<f64> {
    let _off = BpfStats::set("0")?;
    let output = Command::new(&bench.layout.http_bench)
        .args(["syscalls", "--count", &SYSCALL_PAIRS.to_string()])
        .output()
        .context("running ebpf-http-bench syscalls")?;
    if !output.status.success() {
        bail!(
            "ebpf-http-bench syscalls failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    super::probe::json_number(&text, "ns_per_syscall")
        .with_context(|| format!("no ns_per_syscall in {text:?}"))
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

/// OBI's (`otel/ebpf-instrument`) published probe time per request and
/// RSS, printed beside ours as an anchor (issue 15); OBI does not run here.
const OBI_PROBE_NS_PER_REQUEST: u32 = 500;
const OBI_RSS_MB: u32 = 75;

pub(crate) fn table(result: &EbpfResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\neBPF agent: {}", describe());
    match &result.steps {
        Err(e) => {
            let _ = writeln!(out, "  not measured: {e}");
        }
        Ok(Measured {
            tax,
            steps,
            latency,
            variants,
            candidates,
        }) => {
            let _ = writeln!(
                out,
                "node tax (CPU ns per read/write syscall of an untraced process): no agent {:.1}, agent selecting nothing {:.1} (+{:.1}), agent selecting another process {:.1} (+{:.1}); target under +{TARGET_NODE_TAX_NS:.0}: {}",
                tax.no_agent,
                tax.nothing_selected,
                tax.nothing_selected - tax.no_agent,
                tax.other_selected,
                tax.other_selected - tax.no_agent,
                verdict(tax.added() < TARGET_NODE_TAX_NS),
            );
            let _ = writeln!(
                out,
                "| requests/s (done) | p50 / p99 without | p50 / p99 with agent | probe ns / request: server's (all processes', runs) | agent CPU-s / M requests | agent RSS (peak) | spans / requests | kernel events lost |"
            );
            let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- |");
            for s in steps {
                let done = s.traced.ok as f64 / s.traced.seconds;
                let _ = writeln!(
                    out,
                    "| {} ({:.0}) | {} / {} µs | {} / {} µs | {:.0} ({:.0}, {:.1} runs) | {:.2} | {:.1} MiB ({:.1}) | {} / {} | {} |",
                    s.rate,
                    done,
                    s.plain.p50_us,
                    s.plain.p99_us,
                    s.traced.p50_us,
                    s.traced.p99_us,
                    s.attributable_ns_per_request(),
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
            for s in steps {
                let per_program: Vec<String> = s
                    .programs
                    .iter()
                    .map(|(name, ns, runs)| {
                        format!(
                            "{name} {:.0} ns/run ({:.1} runs/request)",
                            *ns as f64 / (*runs).max(1) as f64,
                            *runs as f64 / s.traced.ok.max(1) as f64
                        )
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "per program at {}/s (every process): {}",
                    s.rate,
                    per_program.join(", ")
                );
            }
            for (rate, target) in TARGET_REQUEST_NS {
                if let Some(s) = steps.iter().find(|s| s.rate == rate) {
                    let ns = s.attributable_ns_per_request();
                    let _ = writeln!(
                        out,
                        "probe time the server adds per request at {rate}/s: {ns:.0} ns (target under {target:.0}): {}",
                        verdict(ns < target)
                    );
                }
            }
            match latency {
                Ok(latency) => out.push_str(&latency::table(latency)),
                Err(e) => {
                    let _ = writeln!(out, "p99 latency added: not measured: {e}");
                }
            }
            if let Some(s) = steps.iter().find(|s| s.rate == 20_000) {
                let mib = s.rss as f64 / (1 << 20) as f64;
                let _ = writeln!(
                    out,
                    "agent RSS at 20000/s: {mib:.1} MiB (target under 40): {}",
                    verdict(mib < 40.0)
                );
            }
            if let Some(s) = steps.iter().find(|s| s.rate == 20_000) {
                let _ = writeln!(
                    out,
                    "anchor (published figures, not measured here): OBI (otel/ebpf-instrument, the agent the chart used) about {OBI_PROBE_NS_PER_REQUEST} ns of probe time per request and {OBI_RSS_MB} MB RSS; ours at 20000/s: {:.0} ns, {:.1} MiB",
                    s.attributable_ns_per_request(),
                    s.rss as f64 / (1 << 20) as f64,
                );
            }
            if let Some(v) = variants.first() {
                let mib = v.idle_rss as f64 / (1 << 20) as f64;
                let _ = writeln!(
                    out,
                    "agent RSS idle (default build, fresh agent): {mib:.1} MiB (target under {TARGET_IDLE_RSS_MIB:.0}): {}",
                    verdict(mib < TARGET_IDLE_RSS_MIB)
                );
            }
            let _ = writeln!(
                out,
                "agent variants at {VARIANT_RATE}/s, each in a fresh agent (same run, same machine):"
            );
            let _ = writeln!(
                out,
                "| variant | RSS idle | RSS after (peak) | agent CPU-s / M requests | threads |"
            );
            let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
            let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
            for v in variants {
                let _ = writeln!(
                    out,
                    "| {} | {:.1} MiB | {:.1} MiB ({:.1}) | {:.2} | {} |",
                    v.name,
                    mib(v.idle_rss),
                    mib(v.rss),
                    mib(v.peak_rss),
                    v.cpu_per_million(),
                    v.threads,
                );
            }
            for candidate in candidates {
                match candidate {
                    Ok(candidate) => out.push_str(&candidate::table(candidate)),
                    Err(e) => {
                        let _ = writeln!(out, "a hook candidate was not measured: {e}");
                    }
                }
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
        Ok(Measured {
            tax,
            steps,
            latency,
            variants,
            candidates,
        }) => Json::Object(vec![
            ("status", Json::Str("measured".into())),
            ("description", Json::Str(describe())),
            (
                "node_tax_ns_per_syscall",
                Json::Object(vec![
                    ("no_agent", Json::float(tax.no_agent)),
                    ("agent_selecting_nothing", Json::float(tax.nothing_selected)),
                    (
                        "agent_selecting_another_process",
                        Json::float(tax.other_selected),
                    ),
                ]),
            ),
            (
                "latency",
                match latency {
                    Ok(latency) => latency::json(latency),
                    Err(e) => Json::Object(vec![("error", Json::Str(e.clone()))]),
                },
            ),
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
                                (
                                    "server_probe_ns_per_request",
                                    Json::float(s.attributable_ns_per_request()),
                                ),
                                ("unselected_probe_runs", Json::Int(s.unselected_probe_runs)),
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
            (
                "variants",
                Json::Array(
                    variants
                        .iter()
                        .map(|v| {
                            Json::Object(vec![
                                ("name", Json::Str(v.name.into())),
                                ("rate", Json::Int(VARIANT_RATE)),
                                ("requests", Json::Int(v.requests)),
                                (
                                    "agent_cpu_seconds_per_million",
                                    Json::float(v.cpu_per_million()),
                                ),
                                ("agent_idle_rss_bytes", Json::Int(v.idle_rss)),
                                ("agent_rss_bytes", Json::Int(v.rss)),
                                ("agent_peak_rss_bytes", Json::Int(v.peak_rss)),
                                ("threads", Json::Int(v.threads)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "hook_candidates",
                Json::Array(
                    candidates
                        .iter()
                        .map(|candidate| match candidate {
                            Ok(candidate) => candidate::json(candidate),
                            Err(e) => Json::Object(vec![
                                ("status", Json::Str("failed".into())),
                                ("error", Json::Str(e.clone())),
                            ]),
                        })
                        .collect(),
                ),
            ),
        ]),
    }
}
