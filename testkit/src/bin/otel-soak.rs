//! `otel-soak`: the telemetry plane under steady load for a long time, as
//! `cargo xtask soak --minutes N` runs it (release binaries; not in CI).
//!
//! In a network namespace with dnsmasq as the cluster's DNS: the agent
//! (the original chart's agent config, load-balancing by trace ID to
//! `gateway-collector-headless...`) -> three gateways (the chart's gateway
//! config: tail sampling, batch, OpAMP to a test server) -> `otel-sink` as
//! OllyScale's receiver at `ollyscale-otlp-receiver...:4343`. The configs run
//! unchanged but for their listen addresses (three gateways share the
//! namespace). `otel-loadgen` sends traces, metrics and logs at steady rates.
//!
//! Every `--restart-every` minutes one gateway is rotated out the way a
//! rolling update does it: its address leaves the DNS answer, the agent moves
//! its traffic off it, it drains (its tail sampler decides what it holds,
//! its batches go out), its final self-metrics are read, it is stopped with
//! SIGTERM, started again and put back in the DNS answer.
//!
//! Each minute it samples every process's RSS and the throughput; at the end
//! it waits for the plane to drain and prints the ledger per signal: what
//! the load generators had acknowledged against what the sink received plus
//! every counted drop (sampled out by policy, failed exports, refusals).
//! Anything unaccounted fails the run. Results go to `--out`: `soak.json`
//! and `soak.svg` (RSS and throughput over time).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::netns::{Dnsmasq, NetNs, NsCollector};
use testkit::{http_request, metric_sum};

const GATEWAY_NAME: &str = "gateway-collector-headless.otel-system.svc.cluster.local";
const RECEIVER_NAME: &str = "ollyscale-otlp-receiver.ollyscale.svc.cluster.local";
const OPAMP_NAME: &str = "ollyscale-opamp-server.ollyscale.svc.cluster.local";
const GATEWAYS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const RECEIVER_IP: &str = "127.0.0.9";
const OPAMP_IP: &str = "127.0.0.10";
/// How long a rotated-out gateway or the plane at the end may take to drain
/// (the chart's `decision_wait` is 10 s, its batch timeout 5 s).
const DRAIN_PATIENCE: Duration = Duration::from_secs(90);

/// The three signals, with their self-metric suffixes and sink counters.
const SIGNALS: [(&str, &str, &str); 3] = [
    ("traces", "spans", "spans"),
    ("metrics", "metric_points", "data_points"),
    ("logs", "log_records", "log_records"),
];

struct Args {
    minutes: f64,
    restart_every: f64,
    bin: PathBuf,
    configs: PathBuf,
    out: PathBuf,
    spans_per_second: u64,
    points_per_second: u64,
    logs_per_second: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: otel-soak --bin DIR --configs DIR --out DIR [--minutes N] [--restart-every MINUTES]\n\
         \x20                [--spans-per-second N] [--points-per-second N] [--logs-per-second N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        minutes: 60.0,
        restart_every: 4.0,
        bin: PathBuf::new(),
        configs: PathBuf::new(),
        out: PathBuf::new(),
        spans_per_second: 5_000,
        points_per_second: 1_000,
        logs_per_second: 1_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let number = || value.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--minutes" => args.minutes = number(),
            "--restart-every" => args.restart_every = number(),
            "--bin" => args.bin = PathBuf::from(&value),
            "--configs" => args.configs = PathBuf::from(&value),
            "--out" => args.out = PathBuf::from(&value),
            "--spans-per-second" => args.spans_per_second = number() as u64,
            "--points-per-second" => args.points_per_second = number() as u64,
            "--logs-per-second" => args.logs_per_second = number() as u64,
            _ => usage(),
        }
    }
    if args.bin.as_os_str().is_empty()
        || args.configs.as_os_str().is_empty()
        || args.out.as_os_str().is_empty()
    {
        usage()
    }
    args
}

fn main() -> Result<()> {
    let args = parse_args();
    if let Err(why) = testkit::netns::available() {
        bail!("the soak needs network namespaces and dnsmasq: {why}");
    }
    std::fs::create_dir_all(&args.out)?;
    let gateway_config = std::fs::read_to_string(args.configs.join("original-gateway.yaml"))?;
    let agent_config = std::fs::read_to_string(args.configs.join("original-agent.yaml"))?;

    let ns = NetNs::create("soak");
    let records: Vec<(&str, &[&str])> = vec![
        (GATEWAY_NAME, &GATEWAYS),
        (RECEIVER_NAME, &[RECEIVER_IP]),
        (OPAMP_NAME, &[OPAMP_IP]),
    ];
    let dns = Dnsmasq::start_at(&ns, "127.0.0.1", &records);
    let sink = Process::spawn(
        ns.command(args.bin.join("otel-sink"))
            .args(["--listen", &format!("{RECEIVER_IP}:4343")])
            .args(["--stats", &format!("{RECEIVER_IP}:9999")]),
        "otel-sink",
    )?;
    let sink_stats: SocketAddr = format!("{RECEIVER_IP}:9999").parse()?;
    let opamp = Process::spawn(
        ns.command(args.bin.join("opamp-test-server")).args([
            "--ws",
            &format!("{OPAMP_IP}:4320"),
            "--observe",
        ]),
        "opamp-test-server",
    )?;
    let mut gateways: Vec<Gateway> = GATEWAYS
        .iter()
        .map(|ip| Gateway::start(&ns, &args.bin, &gateway_config, ip))
        .collect();
    let agent = NsCollector::start_with_args(
        &ns,
        args.bin.join("agent-collector"),
        "agent",
        &agent_config,
        &[
            "--set",
            "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:4317",
            "--set",
            "receivers.otlp.protocols.http.endpoint=127.0.0.1:4318",
            "--set",
            "service.telemetry.metrics.address=127.0.0.1:8888",
        ],
    );
    agent.address("otlp", "grpc");
    wait_backends(&ns, &agent, GATEWAYS.len())?;
    // Wait for the sink to answer before the load starts.
    sink_json(&ns, sink_stats)?;

    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let loads = [
        ("traces", args.spans_per_second),
        ("metrics", args.points_per_second),
        ("logs", args.logs_per_second),
    ];
    let mut loadgens = Vec::new();
    for (signal, rate) in loads {
        let mut command = ns.command(args.bin.join("otel-loadgen"));
        command
            .args(["--endpoint", "127.0.0.1:4317", "--signal", signal])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &format!("{}s", duration.as_secs())])
            .args(["--items-per-request", "50", "--concurrency", "2", "--json"])
            .args([
                "--services",
                "ollyscale-api,ollyscale-web,demo-shop,billing",
            ])
            .args(["--error-ratio", "0.05", "--unique"])
            .stdout(Stdio::piped());
        loadgens.push((signal, Process::spawn(&mut command, "otel-loadgen")?));
    }
    eprintln!(
        "soak: {} min, {} spans/s, {} points/s, {} logs/s, a gateway rotated every {} min",
        args.minutes,
        args.spans_per_second,
        args.points_per_second,
        args.logs_per_second,
        args.restart_every
    );

    let mut ledger = Ledger::default();
    let mut samples: Vec<Sample> = Vec::new();
    let started = Instant::now();
    let mut next_sample = started;
    let mut next_rotation = started + Duration::from_secs_f64(args.restart_every * 60.0);
    let mut rotated = 0usize;
    let mut last_delivered = 0.0;
    let mut last_at = started;
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_sample {
            let delivered = sink_json(&ns, sink_stats)?
                .get("spans")
                .copied()
                .unwrap_or(0.0);
            let rate = (delivered - last_delivered) / now.duration_since(last_at).as_secs_f64();
            (last_delivered, last_at) = (delivered, now);
            let mut rss = BTreeMap::new();
            rss.insert("agent".to_string(), rss_mib(agent.pid()));
            for g in &gateways {
                rss.insert(format!("gateway {}", g.ip), rss_mib(g.collector.pid()));
            }
            rss.insert("sink".to_string(), rss_mib(sink.pid()));
            let accepted = metric_sum(
                &agent.metrics_text(&ns),
                "otelcol_receiver_accepted_spans_total",
                &[],
            );
            let sample = Sample {
                minute: started.elapsed().as_secs_f64() / 60.0,
                rss,
                delivered_spans_per_second: if samples.is_empty() { 0.0 } else { rate },
                agent_accepted_spans: accepted,
            };
            eprintln!(
                "soak: {:5.1} min  delivered {:>7.0} spans/s  RSS MiB {}",
                sample.minute,
                sample.delivered_spans_per_second,
                sample
                    .rss
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            samples.push(sample);
            next_sample += Duration::from_secs(60);
        }
        if now >= next_rotation {
            let index = rotated % gateways.len();
            rotated += 1;
            let at = Instant::now();
            let remaining: Vec<&str> = GATEWAYS
                .iter()
                .copied()
                .filter(|ip| *ip != gateways[index].ip)
                .collect();
            dns.set(&ns, GATEWAY_NAME, &remaining);
            wait_backends(&ns, &agent, remaining.len())?;
            let final_metrics = gateways[index].drain(&ns)?;
            ledger.add_gateway(&final_metrics);
            gateways[index].collector.signal(libc::SIGTERM);
            gateways[index].collector.wait_exit();
            let ip = gateways[index].ip.clone();
            gateways[index] = Gateway::start(&ns, &args.bin, &gateway_config, &ip);
            dns.set(&ns, GATEWAY_NAME, &GATEWAYS);
            wait_backends(&ns, &agent, GATEWAYS.len())?;
            eprintln!(
                "soak: gateway {ip} rotated in {:.1}s",
                at.elapsed().as_secs_f64()
            );
            next_rotation += Duration::from_secs_f64(args.restart_every * 60.0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The load ends on its own; then everything drains.
    let mut acknowledged = BTreeMap::new();
    for (signal, process) in loadgens {
        let output = process.wait_output()?;
        let summary: serde_json::Value =
            serde_json::from_slice(&output).with_context(|| format!("loadgen {signal} summary"))?;
        acknowledged.insert(signal.to_string(), summary);
    }
    ledger.agent = settle(&agent, &ns, "the agent")?;
    for g in &gateways {
        ledger.add_gateway(&g.drain(&ns)?);
    }
    ledger.sink = sink_json(&ns, sink_stats)?;
    drop(opamp);

    // The final self-metrics as they were read, for a second look.
    std::fs::write(args.out.join("agent.prom"), &ledger.agent)?;
    for (i, text) in ledger.gateways.iter().enumerate() {
        std::fs::write(args.out.join(format!("gateway-{i}.prom")), text)?;
    }
    let report = ledger.report(&acknowledged);
    println!("{}", report.text);
    // What the senders were refused (backpressure) or failed on: not
    // acknowledged, so not in the ledger, but an operator wants to know.
    for (signal, summary) in &acknowledged {
        println!(
            "soak: {signal}: {} items acknowledged, {} requests refused (backpressure), {} failed",
            summary["ok_items"], summary["refused_requests"], summary["failed_requests"]
        );
    }
    let json = serde_json::json!({
        "loadgen": acknowledged,
        "minutes": args.minutes,
        "restart_every_minutes": args.restart_every,
        "rates": {"spans": args.spans_per_second, "points": args.points_per_second, "logs": args.logs_per_second},
        "rotations": rotated,
        "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        "ledger": report.json,
        "decision_latency_ms": {"p50": ledger.latency_quantile(0.5), "p99": ledger.latency_quantile(0.99)},
    });
    std::fs::write(
        args.out.join("soak.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(
        args.out.join("soak.svg"),
        plot(&samples, args.restart_every),
    )?;
    println!(
        "soak: decision latency past decision_wait p50 {} ms, p99 {} ms; {} rotations; results in {}",
        fmt_ms(ledger.latency_quantile(0.5)),
        fmt_ms(ledger.latency_quantile(0.99)),
        rotated,
        args.out.display()
    );
    if report.unaccounted {
        bail!("items were lost without being counted (see the ledger above)");
    }
    Ok(())
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

/// A child process that is not a collector, killed when dropped.
struct Process {
    child: Option<Child>,
}

impl Process {
    fn spawn(command: &mut Command, what: &str) -> Result<Process> {
        let child = command
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Process { child: Some(child) })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the exit and returns stdout.
    fn wait_output(mut self) -> Result<Vec<u8>> {
        let child = self.child.take().context("process already waited")?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("exited with {}", output.status);
        }
        Ok(output.stdout)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Gateway {
    ip: String,
    collector: NsCollector,
}

impl Gateway {
    fn start(ns: &NetNs, bin: &Path, config: &str, ip: &str) -> Gateway {
        let sets = [
            format!("receivers.otlp.protocols.grpc.endpoint={ip}:4317"),
            format!("receivers.otlp.protocols.http.endpoint={ip}:4318"),
            format!("service.telemetry.metrics.address={ip}:8888"),
        ];
        let mut args = Vec::new();
        for set in &sets {
            args.push("--set");
            args.push(set.as_str());
        }
        let collector = NsCollector::start_with_args(
            ns,
            bin.join("gateway-collector"),
            &format!("gateway {ip}"),
            config,
            &args,
        );
        collector.address("otlp", "grpc");
        Gateway {
            ip: ip.to_string(),
            collector,
        }
    }

    /// Waits until the gateway holds nothing (see [`held`]) and returns
    /// its metrics then.
    fn drain(&self, ns: &NetNs) -> Result<String> {
        settle(&self.collector, ns, &format!("gateway {}", self.ip))
    }
}

/// Waits until `collector` holds nothing and its counters stand still, and
/// returns its metrics then. A collector that does not get there in
/// [`DRAIN_PATIENCE`] is counted as it is (what it held shows up as
/// unaccounted).
fn settle(collector: &NsCollector, ns: &NetNs, what: &str) -> Result<String> {
    let deadline = Instant::now() + DRAIN_PATIENCE;
    let mut previous = String::new();
    loop {
        let text = collector.metrics_text(ns);
        let holding = held(&text);
        // Two scrapes in a row with the same counters: nothing is between
        // two stages (e.g. sampled spans on their way to the batch).
        let counters = counters_only(&text);
        if holding.is_none() && counters == previous {
            return Ok(text);
        }
        if Instant::now() > deadline {
            eprintln!(
                "soak: {what} did not drain in {}s ({}); counting it as it is",
                DRAIN_PATIENCE.as_secs(),
                holding.unwrap_or_else(|| "counters still moving".to_string())
            );
            return Ok(text);
        }
        previous = counters;
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn m(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels)
}

/// The item counters of a metrics text, for telling whether anything moved.
fn counters_only(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("otelcol_") && l.contains("_total"))
        .filter(|l| !l.starts_with("otelcol_process_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a collector of the chart (receiver -> [tail_sampling ->] batch ->
/// exporter) still holds, or `None`: the tail sampler buffers no trace, the
/// batch processor passed on or dropped all it took, the exporter sent or
/// failed all the batch passed on, and its queue is empty.
fn held(text: &str) -> Option<String> {
    let buffered = m(
        text,
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        &[],
    );
    if buffered > 0.0 {
        return Some(format!("{buffered} traces buffered for sampling"));
    }
    let queued = m(text, "otelcol_exporter_queue_size", &[]);
    if queued > 0.0 {
        return Some(format!("{queued} in exporter queues"));
    }
    for (signal, suffix, _) in SIGNALS {
        let labels = [("processor", "batch"), ("otel_signal", signal)];
        let batch_in = m(text, "otelcol_processor_incoming_items_total", &labels);
        let batch_out = m(text, "otelcol_processor_outgoing_items_total", &labels);
        let batch_dropped = m(text, "otelcol_processor_dropped_items_total", &labels);
        if batch_in != batch_out + batch_dropped {
            return Some(format!(
                "{} {signal} items in batches",
                batch_in - batch_out - batch_dropped
            ));
        }
        let exported = m(text, &format!("otelcol_exporter_sent_{suffix}_total"), &[])
            + exporter_failures(text, suffix);
        if exported != batch_out {
            return Some(format!(
                "{} {signal} items being exported",
                batch_out - exported
            ));
        }
    }
    None
}

/// Items an exporter gave up on or could not queue.
fn exporter_failures(text: &str, suffix: &str) -> f64 {
    m(
        text,
        &format!("otelcol_exporter_send_failed_{suffix}_total"),
        &[],
    ) + m(
        text,
        &format!("otelcol_exporter_enqueue_failed_{suffix}_total"),
        &[],
    )
}

/// Items a settled collector lost and counted: exporter failures and
/// processor drops.
fn counted_losses(text: &str, signal: &str, suffix: &str) -> f64 {
    exporter_failures(text, suffix)
        + m(
            text,
            "otelcol_processor_dropped_items_total",
            &[("otel_signal", signal)],
        )
}

/// Spans the tail sampler did not keep (its incoming minus outgoing, once
/// it holds nothing).
fn sampled_out(text: &str, signal: &str) -> f64 {
    let labels = [("processor", "tail_sampling"), ("otel_signal", signal)];
    m(text, "otelcol_processor_incoming_items_total", &labels)
        - m(text, "otelcol_processor_outgoing_items_total", &labels)
}

fn wait_backends(ns: &NetNs, agent: &NsCollector, n: usize) -> Result<()> {
    let deadline = Instant::now() + DRAIN_PATIENCE;
    loop {
        let got = agent.metric(ns, "otelcol_loadbalancer_num_backends", &[]);
        if got == n as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent never saw {n} backends (last {got})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sink_json(ns: &NetNs, stats: SocketAddr) -> Result<BTreeMap<String, f64>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = ns.enter(move || {
            std::panic::catch_unwind(|| http_request(stats, "GET", "/", &[], b"").body).ok()
        });
        if let Some(body) = body
            && let Ok(map) = serde_json::from_slice::<BTreeMap<String, f64>>(&body)
        {
            return Ok(map);
        }
        if Instant::now() > deadline {
            bail!("the sink's stats never answered at {stats}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

struct Sample {
    minute: f64,
    rss: BTreeMap<String, f64>,
    delivered_spans_per_second: f64,
    agent_accepted_spans: f64,
}

impl Sample {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "minute": self.minute,
            "rss_mib": self.rss,
            "delivered_spans_per_second": self.delivered_spans_per_second,
            "agent_accepted_spans": self.agent_accepted_spans,
        })
    }
}

/// The final self-metrics of every collector that took part.
#[derive(Default)]
struct Ledger {
    agent: String,
    /// One text per gateway process (each rotated one, and the last three).
    gateways: Vec<String>,
    sink: BTreeMap<String, f64>,
}

struct Report {
    text: String,
    json: serde_json::Value,
    unaccounted: bool,
}

impl Ledger {
    fn add_gateway(&mut self, text: &str) {
        self.gateways.push(text.to_string());
    }

    fn gateways_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.gateways.iter().map(|t| m(t, name, labels)).sum()
    }

    fn report(&self, acknowledged: &BTreeMap<String, serde_json::Value>) -> Report {
        let mut text = String::from(
            "\nsignal    acknowledged  agent-accepted  agent-sent  agent-lost  gw-accepted  sampled-out  gw-lost  sink  unaccounted\n",
        );
        let mut json = serde_json::Map::new();
        let mut unaccounted_any = false;
        for (signal, suffix, sink_key) in SIGNALS {
            let acked = acknowledged
                .get(signal)
                .and_then(|s| s["ok_items"].as_f64())
                .unwrap_or(0.0);
            let agent_accepted = m(
                &self.agent,
                &format!("otelcol_receiver_accepted_{suffix}_total"),
                &[],
            );
            let agent_sent = m(
                &self.agent,
                &format!("otelcol_exporter_sent_{suffix}_total"),
                &[],
            );
            let agent_failed = counted_losses(&self.agent, signal, suffix);
            let gw_accepted =
                self.gateways_sum(&format!("otelcol_receiver_accepted_{suffix}_total"), &[]);
            let sampled_out: f64 = self.gateways.iter().map(|t| sampled_out(t, signal)).sum();
            let gw_failed: f64 = self
                .gateways
                .iter()
                .map(|t| counted_losses(t, signal, suffix))
                .sum();
            let sink = self.sink.get(sink_key).copied().unwrap_or(0.0);
            // Every acknowledged item is in the sink or counted as dropped
            // somewhere; more in the sink than that means duplicates
            // (at-least-once retries), which are reported, not hidden.
            let unaccounted = acked - (sink + sampled_out + agent_failed + gw_failed);
            unaccounted_any |= unaccounted > 0.0;
            let _ = writeln!(
                text,
                "{signal:<9} {acked:>12.0} {agent_accepted:>15.0} {agent_sent:>10.0} {agent_failed:>13.0} {gw_accepted:>12.0} {sampled_out:>12.0} {gw_failed:>10.0} {sink:>5.0} {unaccounted:>12.0}"
            );
            json.insert(
                signal.to_string(),
                serde_json::json!({
                    "acknowledged": acked, "agent_accepted": agent_accepted, "agent_sent": agent_sent,
                    "agent_failed": agent_failed, "gateways_accepted": gw_accepted,
                    "sampled_out": sampled_out, "gateways_failed": gw_failed, "sink": sink,
                    "unaccounted": unaccounted,
                }),
            );
        }
        Report {
            text,
            json: serde_json::Value::Object(json),
            unaccounted: unaccounted_any,
        }
    }

    /// A quantile of the tail sampler's decision latency past
    /// `decision_wait`, in ms, over every gateway process (from the
    /// histogram's buckets: the upper bound of the bucket it falls in).
    fn latency_quantile(&self, q: f64) -> Option<f64> {
        let name = "otelcol_processor_tail_sampling_sampling_decision_latency_bucket";
        let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
        let mut infinite = 0.0;
        for text in &self.gateways {
            for line in text.lines().filter(|l| l.starts_with(name)) {
                let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                    continue;
                };
                let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok())
                else {
                    continue;
                };
                // Bounds are ms; `+Inf` (which Rust parses as infinity) is
                // the total.
                match le.parse::<f64>() {
                    Ok(bound) if bound.is_finite() => {
                        *buckets.entry((bound * 1000.0) as u64).or_default() += count;
                    }
                    _ => infinite += count,
                }
            }
        }
        if infinite == 0.0 {
            return None;
        }
        let target = q * infinite;
        buckets
            .iter()
            .find(|(_, count)| **count >= target)
            .map(|(bound, _)| *bound as f64 / 1000.0)
    }
}

/// A named line of (minute, value) points.
type Series = (String, Vec<(f64, f64)>);

/// An SVG of RSS per process (top) and delivered spans/s (bottom) over the
/// minutes, with the gateway rotations marked.
fn plot(samples: &[Sample], restart_every: f64) -> String {
    const W: f64 = 900.0;
    const PANEL: f64 = 220.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 180.0;
    const TOP: f64 = 30.0;
    const GAP: f64 = 60.0;
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    ];
    let last_minute = samples.last().map_or(1.0, |s| s.minute).max(1.0);
    let x = |minute: f64| LEFT + minute / last_minute * (W - LEFT - RIGHT);
    let mut svg = String::new();
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let panels: [(&str, f64, Vec<Series>); 2] = [
        ("RSS (MiB)", TOP, {
            let names: Vec<String> = samples
                .first()
                .map(|s| s.rss.keys().cloned().collect())
                .unwrap_or_default();
            names
                .into_iter()
                .map(|name| {
                    let points = samples
                        .iter()
                        .filter_map(|s| Some((s.minute, *s.rss.get(&name)?)))
                        .collect();
                    (name, points)
                })
                .collect()
        }),
        ("delivered spans/s", TOP + PANEL + GAP, {
            let points = samples
                .iter()
                .skip(1)
                .map(|s| (s.minute, s.delivered_spans_per_second))
                .collect();
            vec![("sink".to_string(), points)]
        }),
    ];
    for (title, top, series) in panels {
        let max = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.15;
        let y = |v: f64| top + PANEL - v / max * PANEL;
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-weight="bold">{title}</text>"##,
            top - 8.0
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            W - LEFT - RIGHT
        );
        for tick in 0..=4 {
            let v = max * f64::from(tick) / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
                LEFT - 6.0,
                y(v) + 4.0
            );
        }
        let mut rotation = restart_every;
        while restart_every > 0.0 && rotation < last_minute {
            let _ = writeln!(
                svg,
                r##"<line x1="{0}" x2="{0}" y1="{top}" y2="{1}" stroke="#ccc" stroke-dasharray="3,3"/>"##,
                x(rotation),
                top + PANEL
            );
            rotation += restart_every;
        }
        for (i, (name, points)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let path: Vec<String> = points
                .iter()
                .map(|(m, v)| format!("{:.1},{:.1}", x(*m), y(*v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{color}">{name}</text>"#,
                W - RIGHT + 10.0,
                top + 14.0 + 16.0 * i as f64
            );
        }
    }
    let axis = TOP + 2.0 * PANEL + GAP + 20.0;
    let step = (last_minute / 10.0).ceil().max(1.0);
    let mut minute = 0.0;
    while minute <= last_minute {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{axis}" text-anchor="middle">{minute:.0}</text>"#,
            x(minute)
        );
        minute += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">minutes (dashed: a gateway rotated)</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        axis + 16.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_latency_quantiles_come_from_the_buckets_of_every_gateway() {
        let name = "otelcol_processor_tail_sampling_sampling_decision_latency_bucket";
        let gateway = |counts: [u32; 4]| {
            format!(
                "{name}{{processor=\"tail_sampling\",le=\"0\"}} {}\n\
                 {name}{{processor=\"tail_sampling\",le=\"50\"}} {}\n\
                 {name}{{processor=\"tail_sampling\",le=\"250\"}} {}\n\
                 {name}{{processor=\"tail_sampling\",le=\"+Inf\"}} {}\n",
                counts[0], counts[1], counts[2], counts[3]
            )
        };
        let ledger = Ledger {
            gateways: vec![gateway([50, 90, 99, 100]), gateway([50, 90, 100, 100])],
            ..Ledger::default()
        };
        assert_eq!(ledger.latency_quantile(0.5), Some(0.0));
        assert_eq!(ledger.latency_quantile(0.9), Some(50.0));
        assert_eq!(ledger.latency_quantile(0.99), Some(250.0));
        assert_eq!(Ledger::default().latency_quantile(0.99), None);
    }

    #[test]
    fn a_collector_holding_batches_or_exports_is_not_settled() {
        let settled = "otelcol_receiver_accepted_spans_total{receiver=\"otlp\"} 10\n\
            otelcol_processor_incoming_items_total{processor=\"batch\",otel_signal=\"traces\"} 10\n\
            otelcol_processor_outgoing_items_total{processor=\"batch\",otel_signal=\"traces\"} 10\n\
            otelcol_exporter_sent_spans_total{exporter=\"otlp\"} 9\n\
            otelcol_exporter_send_failed_spans_total{exporter=\"otlp\"} 1\n";
        assert_eq!(held(settled), None);
        assert_eq!(counted_losses(settled, "traces", "spans"), 1.0);
        let exporting = settled.replace("} 9\n", "} 8\n");
        assert!(held(&exporting).is_some_and(|h| h.contains("being exported")));
        let batching = settled.replace(
            "outgoing_items_total{processor=\"batch\",otel_signal=\"traces\"} 10",
            "outgoing_items_total{processor=\"batch\",otel_signal=\"traces\"} 7",
        );
        assert!(held(&batching).is_some_and(|h| h.contains("in batches")));
    }
}
