//! `cargo xtask bench`: collector throughput per CPU-second, side by side.
//!
//! ```text
//! cargo xtask bench                      # 10 s per contender, every contender
//! cargo xtask bench --quick              # 2 s per contender (smoke run)
//! cargo xtask bench --duration 30s --rounds 3
//! cargo xtask bench --only floor,agent-gzip --no-build
//! cargo xtask bench --rotel-agent /path/to/rotel-agent
//! cargo xtask bench --only gateway       # only the gateway section
//! cargo xtask bench --only loadbalancing # the loadbalancing row and agent-none
//! cargo xtask bench --only browser       # only the browser section
//! ```
//!
//! One run builds the project once (`cargo build --release -p collector -p
//! loadgen`), starts one counting sink (`otel-sink`, OTLP/gRPC, counts spans
//! and discards them), then measures each contender in turn on loopback, with
//! the same load from `otel-loadgen` (OTLP/gRPC, 100 spans per request, as
//! fast as they are accepted, `--concurrency` requests in flight):
//!
//! | contender | what runs between the load generator and the sink |
//! | --- | --- |
//! | `floor` | `otel-sink --relay`: copies TCP bytes both ways, no parsing (the least any process could spend) |
//! | `rotel` | Rotel's `rotel-agent` (PyPI `rotel`): OTLP/gRPC in -> batch (its defaults: at most 8192 spans, 200ms) -> OTLP/gRPC out, gzip |
//! | `agent-gzip` | our `agent-collector`: otlp receiver -> batch (otelcol's defaults: send at 8192 spans or 200ms, no maximum) -> otlp exporter, `compression: gzip` (the default, level 1) |
//! | `agent-gzip6` | the same at `compression_params.level: 6`, zlib's default and the level Rotel compresses at |
//! | `agent-none` | the same with `compression: none` |
//! | `loadbalancing` | `agent-none` with the `loadbalancing` exporter instead of `otlp`: `routing_key: traceID`, a static resolver over three counting sinks (as three gateways), `compression: none` |
//! | `loadbalancing-gzip` | the same with `compression: gzip` |
//!
//! (Rotel gzips its export whatever `--otlp-exporter-compression` says, so
//! there is no uncompressed Rotel row; the table's `export` column shows what
//! the sink actually received.)
//!
//! For each: a warm-up (`--warmup`, not measured), then the measured window
//! from the start of the load until the sink has counted every span the load
//! generator got accepted (or nothing arrived for a while). Printed, from the
//! collector process only (`/proc/<pid>`):
//!
//! - spans per CPU-second: delivered spans / (utime + stime over the window);
//! - spans per wall second: delivered spans / the window (start of the load
//!   until the sink counted the last of them, so a backlog the collector
//!   accepted but exports late does not inflate it);
//! - peak RSS: `VmHWM`;
//! - delivered/sent: the sink's count against the load generator's accepted count;
//! - the ratio of spans per CPU-second to Rotel's and to the floor's.
//!
//! The loadbalancing rows add, below the table, their CPU per span against
//! their pass-through row's (`agent-none`, `agent-gzip`: the same process
//! and load, one `otlp` exporter instead of the trace-ID split; selecting a
//! loadbalancing row runs its pass-through row too) and the share of spans
//! each backend sink counted. The load's traces have 10 spans each, 10
//! traces per request, so nearly every batch is split three ways. Targets
//! (issue 15): at most 1.05x the pass-through's CPU per span uncompressed,
//! 1.10x with gzip.
//!
//! The targets for our agent (issue 15): >= 4x Rotel's spans per CPU-second
//! gzipping at Rotel's level (`agent-gzip6`; the level-1 row is printed
//! beside it), no more than Rotel's peak RSS, and uncompressed within 2x of
//! the floor's CPU per span. Everything also goes to `target/bench/results.json`;
//! each process's output goes to `target/bench/logs/`.
//!
//! Rotel is downloaded once with pip into `~/.cache/ollyscale-otel/rotel/`
//! (see [`rotel`]); when it cannot be had, the other contenders still run and
//! its row says why. Every child process is killed when the run ends, fails
//! or is interrupted (Ctrl-C). The machine's other load shows up as noise:
//! compare figures from one run, and use `--rounds` for medians.
//!
//! After the table, the **gateway** section (`gateway`, see [`gateway`]):
//! `gateway-collector` with its embedded config (the original
//! `tail_sampling` policy set, `decision_wait` shortened to 2 s) exporting
//! uncompressed to the same sink, fed traces of 10 spans from four services
//! with 5% errors. It prints spans/s received, CPU-seconds per million
//! spans, the kept fraction, the decision latency p50/p99 past
//! `decision_wait` (from the processor's histogram) and peak RSS, for the
//! embedded config and, as a diagnostic, with `batch.send_batch_size` 8192;
//! then, with
//! 50,000 traces buffered (`decision_wait` 120 s), the RSS per buffered span
//! against the span's OTLP-encoded size (goal: within 2x).
//!
//! `--only` takes `floor`, `rotel`, `agent-gzip`, `agent-gzip6`, `agent-none`,
//! `loadbalancing`, `loadbalancing-gzip`, `gateway`, `ebpf` and `browser`.
//!
//! Last, the **browser** section (`browser`, see [`browser`]):
//! `browser-collector` with its embedded config exporting uncompressed to
//! the same sink, fed OTLP/JSON by 16 client threads (1..=20 spans per
//! request, 10,000 client addresses in `X-Forwarded-For`, half keep-alive),
//! with the limiter on (the embedded receiver) and off. It prints
//! requests/s, spans/s, requests per CPU-second, latency p50/p99, peak RSS
//! and non-200 answers per config, and the limiter's cost (target: under 5%
//! of the intake's CPU).

mod browser;
mod children;
mod contender;
mod ebpf;
mod gateway;
mod probe;
mod report;
mod rotel;
mod sink;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{cmd, paths};
use children::{ChildGuard, check_interrupted, pause};
pub(crate) use contender::ContenderId;
use contender::describe;
use probe::{SinkCounts, cpu_ticks, free_address, peak_rss_bytes};
use sink::{Sink, counts_of, drain_all, total_since};

/// How long a started process may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a process on fresh ports before giving up.
const START_ATTEMPTS: usize = 3;
/// After the load ends, the drain stops once nothing arrived for this long...
const DRAIN_QUIET: Duration = Duration::from_secs(3);
/// ...or at the latest after this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Measured load per contender (Go-style: `10s`, `500ms`, `1m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured load before each measurement.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Smoke run: 2 s per contender, 500 ms warm-up (overrides --duration and --warmup).
    #[arg(long)]
    quick: bool,
    /// Rounds over all contenders; each row shows the round with the median spans/CPU-s.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Requests the load generator keeps in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    items_per_request: usize,
    /// Contenders to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<ContenderId>,
    /// Use the release binaries already built (skip `cargo build --release`).
    #[arg(long)]
    no_build: bool,
    /// A `rotel-agent` binary to use instead of the one from PyPI.
    #[arg(long, value_name = "PATH")]
    rotel_agent: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (expected e.g. 10s, 500ms, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?} (use ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// The settings every contender ran with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) rounds: u32,
    pub(crate) concurrency: usize,
    pub(crate) items_per_request: usize,
    pub(crate) cpus: usize,
    pub(crate) rotel_version: Option<String>,
    /// The measured source: `git describe --always --dirty` of the workspace.
    pub(crate) source: Option<String>,
}

/// The figures of one measured window.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    /// Spans the sink counted during the window.
    pub(crate) delivered: u64,
    /// Spans the load generator sent.
    pub(crate) sent: u64,
    /// Spans the collector accepted (OK answers).
    pub(crate) accepted: u64,
    pub(crate) refused_requests: u64,
    pub(crate) failed_requests: u64,
    /// How long the load generator sent.
    pub(crate) loadgen_seconds: f64,
    /// Load plus drain: the span of the CPU reading.
    pub(crate) window_seconds: f64,
    /// The collector's user + system CPU time over the window.
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_bytes: u64,
    /// Whether the sink saw every accepted span.
    pub(crate) drained: bool,
    /// What the sink received in the window.
    pub(crate) export: SinkCounts,
    pub(crate) sink_cpu_seconds: f64,
    /// Approximate (sampled until it exited).
    pub(crate) loadgen_cpu_seconds: f64,
    /// Spans each sink counted in the window (one entry unless the
    /// contender sends to the backend sinks).
    pub(crate) per_sink: Vec<u64>,
}

impl Measurement {
    pub(crate) fn spans_per_cpu_second(&self) -> f64 {
        if self.cpu_seconds > 0.0 {
            self.delivered as f64 / self.cpu_seconds
        } else {
            f64::NAN
        }
    }

    pub(crate) fn spans_per_second(&self) -> f64 {
        if self.window_seconds > 0.0 {
            self.delivered as f64 / self.window_seconds
        } else {
            f64::NAN
        }
    }

    pub(crate) fn delivered_ratio(&self) -> f64 {
        if self.accepted > 0 {
            self.delivered as f64 / self.accepted as f64
        } else {
            f64::NAN
        }
    }
}

/// What became of a contender.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// One measurement per round.
    Measured(Vec<Measurement>),
    /// Could not be started at all (Rotel not obtainable).
    Unavailable(String),
    /// Started but a round failed.
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct ContenderResult {
    pub(crate) id: ContenderId,
    pub(crate) description: String,
    pub(crate) outcome: Outcome,
}

/// Paths of the binaries and outputs.
struct Layout {
    agent: PathBuf,
    gateway: PathBuf,
    browser: PathBuf,
    ebpf_agent: PathBuf,
    /// `ebpf-agent` built with `--no-default-features`: glibc's allocator
    /// (see [`ebpf::Build`]).
    ebpf_agent_glibc: PathBuf,
    http_bench: PathBuf,
    loadgen: PathBuf,
    sink: PathBuf,
    out_dir: PathBuf,
    log_dir: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let root = paths::repo_root();
        let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        let release = target.join("release");
        let out_dir = target.join("bench");
        Layout {
            agent: release.join("agent-collector"),
            gateway: release.join("gateway-collector"),
            browser: release.join("browser-collector"),
            ebpf_agent: release.join("ebpf-agent"),
            ebpf_agent_glibc: release.join("ebpf-agent-glibc"),
            http_bench: release.join("ebpf-http-bench"),
            loadgen: release.join("otel-loadgen"),
            sink: release.join("otel-sink"),
            log_dir: out_dir.join("logs"),
            out_dir,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }
}

/// `cargo xtask bench`.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    children::catch_interrupts();
    let (duration, warmup) = if args.quick {
        (Duration::from_secs(2), Duration::from_millis(500))
    } else {
        (args.duration, args.warmup)
    };
    if duration.is_zero() || args.concurrency == 0 || args.items_per_request == 0 {
        bail!("--duration, --concurrency and --items-per-request must be > 0");
    }
    // A loadbalancing row is reported against its pass-through row, so
    // selecting it selects that one too.
    let selected = |id: &ContenderId| {
        args.only.is_empty()
            || args.only.contains(id)
            || args.only.iter().any(|o| o.baseline() == Some(*id))
    };
    let run_gateway = selected(&ContenderId::Gateway);
    let run_ebpf = selected(&ContenderId::Ebpf);
    let run_browser = selected(&ContenderId::Browser);
    // The gateway, eBPF and browser have their own sections; these go in the table.
    let contenders: Vec<ContenderId> = ContenderId::ALL
        .into_iter()
        .filter(|id| selected(id) && !id.has_own_section())
        .collect();
    let layout = Layout::new();
    std::fs::create_dir_all(&layout.log_dir)
        .with_context(|| format!("creating {}", layout.log_dir.display()))?;

    if !args.no_build && run_ebpf {
        // Built first and copied aside: the default build below then puts
        // the default `ebpf-agent` back in place.
        let features = ["--no-default-features"];
        eprintln!(
            "bench: building the glibc agent (cargo build --release -p ebpf-agent {})",
            features.join(" ")
        );
        cmd::run_inherited(
            cmd::cargo()
                .current_dir(paths::repo_root())
                .args(["build", "--release", "-p", "ebpf-agent"])
                .args(features),
        )?;
        std::fs::copy(&layout.ebpf_agent, &layout.ebpf_agent_glibc).with_context(|| {
            format!(
                "copying {} to {}",
                layout.ebpf_agent.display(),
                layout.ebpf_agent_glibc.display()
            )
        })?;
    }
    if !args.no_build {
        let mut packages = vec!["-p", "collector", "-p", "loadgen"];
        if run_ebpf {
            packages.extend(["-p", "ebpf-agent"]);
        }
        eprintln!(
            "bench: building release binaries (cargo build --release {})",
            packages.join(" ")
        );
        cmd::run_inherited(
            cmd::cargo()
                .current_dir(paths::repo_root())
                .args(["build", "--release"])
                .args(&packages),
        )?;
    }
    let mut binaries = vec![&layout.loadgen, &layout.sink];
    if !contenders.is_empty() {
        binaries.push(&layout.agent);
    }
    if run_gateway {
        binaries.push(&layout.gateway);
    }
    if run_browser {
        binaries.push(&layout.browser);
    }
    if run_ebpf {
        binaries.push(&layout.ebpf_agent);
        binaries.push(&layout.ebpf_agent_glibc);
        binaries.push(&layout.http_bench);
    }
    for binary in binaries {
        if !cmd::is_executable(binary) {
            bail!("{} is missing (run without --no-build)", binary.display());
        }
    }

    let rotel = if contenders.iter().any(|id| id.is_rotel()) {
        match rotel::obtain(args.rotel_agent.as_deref()) {
            Ok(rotel) => {
                eprintln!(
                    "bench: rotel {} at {}",
                    rotel.version,
                    rotel.binary.display()
                );
                Ok(rotel)
            }
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("bench: rotel: unavailable: {why}");
                Err(why)
            }
        }
    } else {
        Err("not selected".to_string())
    };

    let settings = Settings {
        duration,
        warmup,
        rounds: args.rounds,
        concurrency: args.concurrency,
        items_per_request: args.items_per_request,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        rotel_version: rotel.as_ref().ok().map(|r| r.version.clone()),
        source: cmd::run_captured(
            Command::new("git")
                .current_dir(paths::repo_root())
                .args(["describe", "--always", "--dirty"]),
        )
        .ok()
        .map(|out| out.trim().to_string()),
    };
    let backends = if contenders.iter().any(|id| id.uses_backends()) {
        (1..=contender::LB_BACKENDS)
            .map(|i| Sink::start_named(&layout, &format!("sink-backend-{i}")))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let mut bench = Bench {
        layout: &layout,
        settings: &settings,
        sink: Sink::start(&layout)?,
        backends,
    };

    let mut results: Vec<ContenderResult> = contenders
        .iter()
        .map(|&id| ContenderResult {
            id,
            description: describe(id),
            outcome: match (&rotel, id.is_rotel()) {
                (Err(why), true) => Outcome::Unavailable(why.clone()),
                _ => Outcome::Measured(Vec::new()),
            },
        })
        .collect();
    for round in 1..=settings.rounds {
        for result in results.iter_mut() {
            let Outcome::Measured(rounds) = &mut result.outcome else {
                continue;
            };
            let id = result.id;
            eprintln!(
                "bench: round {round}/{}: {} ...",
                settings.rounds,
                id.label()
            );
            match bench.measure(id, rotel.as_ref().ok()) {
                Ok(m) => {
                    eprintln!(
                        "bench:   {:.0} spans/CPU-s, {:.0} spans/s, {:.2} CPU-s, peak RSS {:.1} MiB, delivered {}/{}",
                        m.spans_per_cpu_second(),
                        m.spans_per_second(),
                        m.cpu_seconds,
                        m.peak_rss_bytes as f64 / (1024.0 * 1024.0),
                        m.delivered,
                        m.accepted
                    );
                    rounds.push(m);
                }
                Err(e) => {
                    check_interrupted()?;
                    eprintln!("bench:   failed: {e:#}");
                    result.outcome = Outcome::Failed(format!("{e:#}"));
                }
            }
        }
    }

    let gateway = if run_gateway {
        Some(gateway::run(&mut bench)?)
    } else {
        None
    };

    let ebpf = if run_ebpf {
        Some(ebpf::run(&mut bench)?)
    } else {
        None
    };

    let browser = if run_browser {
        Some(browser::run(&mut bench)?)
    } else {
        None
    };

    if !results.is_empty() {
        print!("{}", report::table(&settings, &results));
    }
    if let Some(gateway) = &gateway {
        print!("{}", gateway::table(&settings, gateway));
    }
    if let Some(ebpf) = &ebpf {
        print!("{}", ebpf::table(ebpf));
    }
    if let Some(browser) = &browser {
        print!("{}", browser::table(&settings, browser));
    }
    let json_path = layout.out_dir.join("results.json");
    std::fs::write(
        &json_path,
        format!(
            "{}\n",
            report::json(
                &settings,
                &results,
                gateway.as_ref(),
                ebpf.as_ref(),
                browser.as_ref()
            )
        ),
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "\nresults: {}\nlogs:    {}",
        json_path.display(),
        layout.log_dir.display()
    );
    Ok(())
}

/// Runs `start` up to [`START_ATTEMPTS`] times: a port picked free may have
/// been taken before the child bound it.
fn with_fresh_ports<T>(what: &str, mut start: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        check_interrupted()?;
        match start() {
            Ok(value) => return Ok(value),
            Err(e) if attempt < START_ATTEMPTS => {
                check_interrupted()?;
                eprintln!("bench: {what} did not start ({e:#}); retrying on other ports");
                attempt += 1;
            }
            Err(e) => {
                return Err(e.context(format!("{what} did not start ({START_ATTEMPTS} attempts)")));
            }
        }
    }
}

/// What otel-loadgen reported.
struct LoadgenSummary {
    sent: u64,
    accepted: u64,
    refused_requests: u64,
    failed_requests: u64,
    seconds: f64,
    cpu_seconds: f64,
}

/// A contender's running process, and where the load goes.
struct Running {
    guard: ChildGuard,
    endpoint: SocketAddr,
}

struct Bench<'a> {
    layout: &'a Layout,
    settings: &'a Settings,
    sink: Sink,
    /// The loadbalancing rows' backends (empty unless one is selected).
    backends: Vec<Sink>,
}

impl Bench<'_> {
    /// Starts the contender, warms it up, measures one window, stops it.
    fn measure(&mut self, id: ContenderId, rotel: Option<&rotel::Rotel>) -> Result<Measurement> {
        let mut running = self.start(id, rotel)?;
        let pid = running.guard.pid();
        let ticks = probe::clock_ticks_per_second();

        let backends = id.uses_backends();
        if !self.settings.warmup.is_zero() {
            let base = counts_of(self.sinks(backends))?;
            let warm = self.loadgen(
                &format!("{}-warmup", id.name()),
                running.endpoint,
                self.settings.warmup,
            )?;
            drain_all(self.sinks(backends), &base, warm.accepted)?;
        }
        running.guard.check_running()?;

        let sink_before = counts_of(self.sinks(backends))?;
        let sink_cpu_before = self.sinks_cpu_ticks(backends)?;
        let cpu_before = cpu_ticks(pid)?;
        let started = Instant::now();
        let load = self.loadgen(id.name(), running.endpoint, self.settings.duration)?;
        let (sink_after, drained) = drain_all(self.sinks(backends), &sink_before, load.accepted)?;
        let cpu_after = cpu_ticks(pid)?;
        let window_seconds = started.elapsed().as_secs_f64();
        let sink_cpu_after = self.sinks_cpu_ticks(backends)?;
        let peak_rss = peak_rss_bytes(pid)?;
        running.guard.check_running()?;
        let export = total_since(&sink_after, &sink_before);
        let per_sink = sink_after
            .iter()
            .zip(&sink_before)
            .map(|(after, before)| after.since(before).spans)
            .collect();
        Ok(Measurement {
            delivered: export.spans,
            sent: load.sent,
            accepted: load.accepted,
            refused_requests: load.refused_requests,
            failed_requests: load.failed_requests,
            loadgen_seconds: load.seconds,
            window_seconds,
            cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / ticks,
            peak_rss_bytes: peak_rss,
            drained,
            export,
            sink_cpu_seconds: sink_cpu_after.saturating_sub(sink_cpu_before) as f64 / ticks,
            loadgen_cpu_seconds: load.cpu_seconds,
            per_sink,
        })
    }

    /// The sinks a contender sends to: the backends, or the one sink.
    fn sinks(&mut self, backends: bool) -> &mut [Sink] {
        if backends {
            &mut self.backends
        } else {
            std::slice::from_mut(&mut self.sink)
        }
    }

    /// The CPU ticks of those sinks together.
    fn sinks_cpu_ticks(&mut self, backends: bool) -> Result<u64> {
        self.sinks(backends)
            .iter()
            .map(|s| cpu_ticks(s.guard.pid()))
            .sum()
    }

    fn start(&self, id: ContenderId, rotel: Option<&rotel::Rotel>) -> Result<Running> {
        let sink = self.sink.grpc;
        let backends: Vec<SocketAddr> = self.backends.iter().map(|b| b.grpc).collect();
        let log = self.layout.log(id.name());
        with_fresh_ports(id.label(), || {
            let listen = free_address()?;
            let mut command = contender::command(id, listen, sink, &backends, self.layout, rotel)?;
            let mut guard = ChildGuard::spawn(id.label(), &mut command, &log)?;
            guard.wait_listening(listen, START_TIMEOUT)?;
            Ok(Running {
                guard,
                endpoint: listen,
            })
        })
    }

    /// Runs otel-loadgen against `endpoint` for `duration` and reads its summary.
    fn loadgen(
        &self,
        name: &str,
        endpoint: SocketAddr,
        duration: Duration,
    ) -> Result<LoadgenSummary> {
        self.run_loadgen(
            name,
            endpoint,
            duration,
            self.settings.items_per_request,
            &[],
        )
    }

    /// Runs otel-loadgen against `endpoint` for at most `duration`, with
    /// `items_per_request` and the `extra` options, and reads its summary.
    fn run_loadgen(
        &self,
        name: &str,
        endpoint: SocketAddr,
        duration: Duration,
        items_per_request: usize,
        extra: &[String],
    ) -> Result<LoadgenSummary> {
        let mut command = Command::new(&self.layout.loadgen);
        command
            .arg("--endpoint")
            .arg(endpoint.to_string())
            .args(["--protocol", "grpc", "--signal", "traces", "--json"])
            .arg("--items-per-request")
            .arg(items_per_request.to_string())
            .arg("--concurrency")
            .arg(self.settings.concurrency.to_string())
            .arg("--duration")
            .arg(format!("{}ms", duration.as_millis().max(1)))
            .args(extra);
        let log = self.layout.log(&format!("{name}-loadgen"));
        let mut guard = ChildGuard::spawn("otel-loadgen", &mut command, &log)?;
        let ticks = probe::clock_ticks_per_second();
        let deadline = Instant::now() + duration + Duration::from_secs(60);
        let mut cpu = 0;
        let status = loop {
            // Sampled while it runs: once reaped, its /proc entry is gone.
            if let Ok(now) = cpu_ticks(guard.pid()) {
                cpu = now;
            }
            if let Some(status) = guard.try_exit()? {
                break status;
            }
            if Instant::now() >= deadline {
                bail!(
                    "otel-loadgen did not finish within {:?}; see {}",
                    duration + Duration::from_secs(60),
                    log.display()
                );
            }
            pause()?;
        };
        if !status.success() {
            bail!("otel-loadgen failed ({status}):\n{}", guard.log_tail());
        }
        let output = std::fs::read_to_string(guard.log())
            .with_context(|| format!("reading {}", log.display()))?;
        let summary = output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no JSON summary in {}", log.display()))?;
        let number = |key: &str| {
            probe::json_number(summary, key)
                .with_context(|| format!("otel-loadgen: no {key:?} in {summary}"))
        };
        Ok(LoadgenSummary {
            sent: number("sent_items")? as u64,
            accepted: number("ok_items")? as u64,
            refused_requests: number("refused_requests")? as u64,
            failed_requests: number("failed_requests")? as u64,
            seconds: number("seconds")?,
            cpu_seconds: cpu as f64 / ticks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn median_round_is_chosen_by_cpu_rate() {
        let round = |delivered| Measurement {
            delivered,
            sent: delivered,
            accepted: delivered,
            refused_requests: 0,
            failed_requests: 0,
            loadgen_seconds: 1.0,
            window_seconds: 1.0,
            cpu_seconds: 1.0,
            peak_rss_bytes: 1,
            drained: true,
            export: SinkCounts::default(),
            sink_cpu_seconds: 0.0,
            loadgen_cpu_seconds: 0.0,
            per_sink: vec![delivered],
        };
        let rounds = [round(300), round(100), round(200)];
        assert_eq!(
            report::median_by_cpu_rate(&rounds).map(|m| m.delivered),
            Some(200)
        );
        assert!(report::median_by_cpu_rate(&[]).is_none());
    }
}
