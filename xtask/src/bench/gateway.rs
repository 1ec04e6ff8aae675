//! The gateway role: `gateway-collector` with its embedded default config
//! (the original chart's `tail_sampling` policy set, then `batch`), adapted
//! with `--set`: every listener on a free loopback port, the `otlp/to`
//! exporter sending to the counting sink with `compression: none` (so the
//! sampler is what is measured, not gzip), and a shorter `decision_wait`.
//!
//! Measurements, each on a fresh process:
//!
//! - **Throughput** (`decision_wait` [`THROUGHPUT_WAIT`], `num_traces`
//!   [`THROUGHPUT_NUM_TRACES`]), once per
//!   [`Variant`] (the embedded config, and a diagnostic one with a larger
//!   `batch`), `--rounds` times each: `otel-loadgen`
//!   sends traces of 10 spans, 100 spans per request, from four services
//!   (two `ollyscale-*`, one demo, one other) with 5% error traces, as fast
//!   as they are accepted, for `--duration` (after an unmeasured warm-up whose
//!   traces are all decided and delivered first). The window runs from the
//!   start of the load until every accepted trace was decided and every
//!   sampled span reached the sink. Printed: spans/s received (accepted /
//!   the load's duration), CPU-seconds of the gateway process per million
//!   accepted spans, the kept fraction (sink spans / accepted), the decision
//!   latency past `decision_wait` (p50/p99 from the
//!   `sampling_decision_latency` histogram's buckets, scraped before and
//!   after the window), and peak RSS.
//! - **Memory** (`decision_wait` [`MEMORY_WAIT`], `num_traces`
//!   [`MEMORY_NUM_TRACES`] so that no shard's share of it fills up):
//!   exactly [`MEMORY_TRACES`] traces of 10 spans are sent at a steady
//!   [`MEMORY_RATE`] spans/s; once `sampling_traces_on_memory` shows them
//!   all, the growth of VmRSS since before the load, per buffered span, is
//!   set against the span's OTLP-encoded size (the same load sent straight
//!   to the sink: its request bytes / spans). Goal: within
//!   [`TARGET_RSS_RATIO`]x.
//!
//! The load uses `--unique` (fresh trace IDs in every request): from a
//! cycled pool the same trace IDs would come back as late spans.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::children::{ChildGuard, check_interrupted, pause};
use super::probe::{
    self, SinkCounts, cpu_ticks, free_address, http_get, peak_rss_bytes, rss_bytes,
};
use super::report::{Json, verdict};
use super::{Bench, LoadgenSummary, START_TIMEOUT, with_fresh_ports};

/// `decision_wait` of the throughput run.
const THROUGHPUT_WAIT: Duration = Duration::from_secs(2);
/// `num_traces` of the throughput run: room for every trace of
/// `decision_wait` at 500 k spans/s (100 k traces) several times over, so
/// that traces are decided when due, not early because the buffer is full
/// (the embedded config's 50,000 suits its 10 s wait at a cluster's rate,
/// not 2 s at the bench's).
const THROUGHPUT_NUM_TRACES: u64 = 400_000;
/// `decision_wait` of the memory run: long enough that nothing is decided
/// while the traces are sent and RSS is read.
const MEMORY_WAIT: Duration = Duration::from_secs(120);
/// Traces buffered in the memory run.
const MEMORY_TRACES: u64 = 50_000;
/// `num_traces` of the memory run: twice the traces, so that no shard's
/// share (`num_traces` / shards) fills up and decides traces early.
const MEMORY_NUM_TRACES: u64 = 2 * MEMORY_TRACES;
/// Spans per second of the memory run's load.
const MEMORY_RATE: u64 = 50_000;
/// Spans per trace and per request.
const SPANS_PER_TRACE: u64 = 10;
const ITEMS_PER_REQUEST: usize = 100;
const SERVICES: &str = "ollyscale-api,ollyscale-web,checkout,demo-shop";
const ERROR_RATIO: &str = "0.05";
/// Spans sent straight to the sink to measure their encoded size.
const SIZE_PROBE_SPANS: u64 = 10_000;
/// RSS per buffered span may be at most this many times the span's OTLP size.
pub(crate) const TARGET_RSS_RATIO: f64 = 2.0;
/// After the load, all traces must be decided and delivered within
/// `decision_wait` plus this.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// The memory run waits at most this long for the gauges to show every trace.
const BUFFER_LIMIT: Duration = Duration::from_secs(60);
/// Pauses between two scrapes (a scrape costs the gateway some CPU).
const PAUSES_PER_SCRAPE: u32 = 4;

/// A config of the throughput run: the embedded one, or a diagnostic change.
#[derive(Debug)]
pub(crate) struct Variant {
    /// The name in results.json.
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    /// `--set` overrides beyond the common ones.
    sets: &'static [&'static str],
}

/// The throughput run's configs. The embedded config's `batch`
/// (`send_batch_size: 256`) buffers at most 4 batches (1024 spans) and
/// refuses more with a 1 s retry hint, while `tail_sampling` hands on up to
/// 8192 spans at a time; the second run, a larger batch, shows the
/// sampler's decision latency without that interaction.
pub(crate) const VARIANTS: [Variant; 2] = [
    Variant {
        name: "embedded",
        label: "embedded config (batch 256 / 5s)",
        sets: &[],
    },
    Variant {
        name: "batch-8192",
        label: "diagnostic: processors.batch.send_batch_size=8192",
        sets: &["processors.batch.send_batch_size=8192"],
    },
];

const TS: &str = "otelcol_processor_tail_sampling_";
const MIB: f64 = 1024.0 * 1024.0;

/// What the gateway section runs, in a sentence.
pub(crate) fn describe() -> String {
    format!(
        "gateway-collector, embedded default config via --set: otlp (loopback) -> tail_sampling \
         (the original policy set, decision_wait {}s) -> batch (256 / 5s) -> otlp exporter, compression none",
        THROUGHPUT_WAIT.as_secs()
    )
}

/// The `otel-loadgen` options of the gateway's load (besides endpoint,
/// duration, concurrency and `--items-per-request`).
fn load_args(total_items: Option<u64>, rate: Option<u64>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--spans-per-trace",
        &SPANS_PER_TRACE.to_string(),
        "--services",
        SERVICES,
        "--error-ratio",
        ERROR_RATIO,
        "--unique",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(total) = total_items {
        args.extend(["--total-items".to_string(), total.to_string()]);
    }
    if let Some(rate) = rate {
        args.extend(["--rate".to_string(), rate.to_string()]);
    }
    args
}

fn load_description() -> String {
    format!(
        "otel-loadgen --items-per-request {ITEMS_PER_REQUEST} {}",
        load_args(None, None).join(" ")
    )
}

// ---------------------------------------------------------------------------
// Prometheus text

/// One series of a scrape.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One scrape of the gateway's self-metrics (Prometheus text format).
#[derive(Clone, Debug, Default)]
pub(crate) struct Scrape {
    series: Vec<Series>,
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.chars();
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
        rest = chars.as_str().trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(labels)
}

fn parse_series(line: &str) -> Option<Series> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, Vec::new(), rest)
        }
    };
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Series {
        name: name.to_string(),
        labels,
        value,
    })
}

impl Scrape {
    pub(crate) fn parse(text: &str) -> Scrape {
        Scrape {
            series: text.lines().filter_map(parse_series).collect(),
        }
    }

    /// The sum of the series named `name` (or `name_total`) carrying every
    /// label of `filter`; 0 when there is none.
    pub(crate) fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        let total = format!("{name}_total");
        self.series
            .iter()
            .filter(|s| s.name == name || s.name == total)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn traces_on_memory(&self) -> u64 {
        self.sum(&format!("{TS}sampling_traces_on_memory"), &[]) as u64
    }

    fn buffered_bytes(&self) -> u64 {
        self.sum(&format!("{TS}sampling_buffered_bytes"), &[]) as u64
    }

    /// Traces decided so far: (sampled, not sampled).
    fn decided(&self) -> (u64, u64) {
        let name = format!("{TS}global_count_traces_sampled");
        (
            self.sum(&name, &[("sampled", "true")]) as u64,
            self.sum(&name, &[("sampled", "false")]) as u64,
        )
    }

    fn decided_early(&self) -> u64 {
        self.sum(&format!("{TS}sampling_traces_decided_early"), &[]) as u64
    }

    /// Spans the processor refused (backpressure) or lost.
    fn refused_and_dropped(&self) -> (u64, u64) {
        let p = [("processor", "tail_sampling")];
        (
            self.sum("otelcol_processor_refused_spans", &p) as u64,
            self.sum("otelcol_processor_dropped_items", &p) as u64,
        )
    }

    /// The cumulative buckets of histogram `name` (`name_bucket{le=...}`).
    fn histogram(&self, name: &str) -> Buckets {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .series
            .iter()
            .filter(|s| s.name == bucket)
            .filter_map(|s| {
                let le = &s.labels.iter().find(|(k, _)| k == "le")?.1;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(buckets)
    }

    fn decision_latency(&self) -> Buckets {
        self.histogram(&format!("{TS}sampling_decision_latency"))
    }
}

/// A histogram's cumulative buckets: (upper bound, observations <= it).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    /// The observations made between `earlier` and `self`.
    fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|&(bound, count)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (bound, (count - before).max(0.0))
                })
                .collect(),
        )
    }

    fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` estimates it:
    /// linear within the bucket that holds it (from 0 for the first one);
    /// the highest finite bound when it falls in `+Inf`. Also the upper
    /// bound of that bucket. `None` without observations.
    fn quantile(&self, q: f64) -> Option<(f64, f64)> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    return Some((lower.0, bound));
                }
                if count <= lower.1 || bound <= 0.0 {
                    return Some((bound, bound));
                }
                let estimate = lower.0 + (bound - lower.0) * (rank - lower.1) / (count - lower.1);
                return Some((estimate, bound));
            }
            lower = (bound, count);
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Results

/// The decision latency past `decision_wait` over a window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Latency {
    pub(crate) decisions: u64,
    /// (estimate, upper bound of its bucket), milliseconds.
    pub(crate) p50: Option<(f64, f64)>,
    pub(crate) p99: Option<(f64, f64)>,
    pub(crate) max_bucket: Option<f64>,
}

impl Latency {
    fn from_buckets(buckets: &Buckets) -> Latency {
        let mut max_bucket = None;
        let mut previous = 0.0;
        for &(bound, count) in &buckets.0 {
            if count > previous {
                max_bucket = Some(bound);
            }
            previous = count;
        }
        Latency {
            decisions: buckets.count() as u64,
            p50: buckets.quantile(0.50),
            p99: buckets.quantile(0.99),
            max_bucket,
        }
    }
}

/// One throughput round.
#[derive(Clone, Debug)]
pub(crate) struct Throughput {
    pub(crate) sent: u64,
    pub(crate) accepted: u64,
    pub(crate) refused_requests: u64,
    pub(crate) failed_requests: u64,
    pub(crate) loadgen_seconds: f64,
    /// Load plus decisions and delivery: the span of the CPU reading.
    pub(crate) window_seconds: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_bytes: u64,
    /// Spans the sink counted.
    pub(crate) delivered: u64,
    pub(crate) sampled_traces: u64,
    pub(crate) not_sampled_traces: u64,
    pub(crate) decided_early: u64,
    pub(crate) processor_refused_spans: u64,
    pub(crate) processor_dropped_spans: u64,
    /// Every accepted trace decided and every sampled span delivered in time.
    pub(crate) settled: bool,
    pub(crate) latency: Latency,
    pub(crate) loadgen_cpu_seconds: f64,
}

impl Throughput {
    fn spans_per_second(&self) -> f64 {
        ratio(self.accepted as f64, self.loadgen_seconds)
    }

    fn cpu_seconds_per_million(&self) -> f64 {
        ratio(self.cpu_seconds * 1e6, self.accepted as f64)
    }

    fn kept(&self) -> f64 {
        ratio(self.delivered as f64, self.accepted as f64)
    }
}

/// The memory run.
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    pub(crate) accepted: u64,
    pub(crate) traces_buffered: u64,
    pub(crate) rss_before_bytes: u64,
    pub(crate) rss_after_bytes: u64,
    /// `sampling_buffered_bytes` with every trace buffered.
    pub(crate) buffered_bytes: u64,
    /// OTLP-encoded bytes per span of the same load (request bytes / spans).
    pub(crate) encoded_span_bytes: f64,
    pub(crate) decided_early: u64,
    /// From the start of the load until the gauges showed every trace.
    pub(crate) seconds_to_buffer: f64,
}

impl Memory {
    fn spans_buffered(&self) -> u64 {
        self.traces_buffered * SPANS_PER_TRACE
    }

    fn rss_growth(&self) -> f64 {
        self.rss_after_bytes as f64 - self.rss_before_bytes as f64
    }

    fn rss_per_span(&self) -> f64 {
        ratio(self.rss_growth(), self.spans_buffered() as f64)
    }

    fn accounted_per_span(&self) -> f64 {
        ratio(self.buffered_bytes as f64, self.spans_buffered() as f64)
    }

    fn rss_ratio(&self) -> f64 {
        ratio(self.rss_per_span(), self.encoded_span_bytes)
    }
}

/// The throughput rounds of one [`Variant`], or why there are none.
#[derive(Debug)]
pub(crate) struct VariantResult {
    pub(crate) variant: &'static Variant,
    pub(crate) rounds: Result<Vec<Throughput>, String>,
}

/// Everything the gateway section measured.
#[derive(Debug)]
pub(crate) struct GatewayResult {
    pub(crate) throughput: Vec<VariantResult>,
    pub(crate) memory: Result<Memory, String>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The round with the median CPU-seconds per million spans.
fn median(rounds: &[Throughput]) -> Option<&Throughput> {
    let mut sorted: Vec<&Throughput> = rounds.iter().collect();
    sorted.sort_by(|a, b| {
        a.cpu_seconds_per_million()
            .total_cmp(&b.cpu_seconds_per_million())
    });
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

// ---------------------------------------------------------------------------
// Running it

/// A running gateway.
struct Gateway {
    guard: ChildGuard,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

impl Gateway {
    fn scrape(&mut self) -> Result<Scrape> {
        self.guard.check_running()?;
        let text = http_get(self.metrics, "/metrics").context("scraping the gateway's metrics")?;
        Ok(Scrape::parse(&text))
    }
}

/// The gateway's listeners.
#[derive(Clone, Copy, Debug)]
struct Ports {
    grpc: SocketAddr,
    http: SocketAddr,
    health: SocketAddr,
    metrics: SocketAddr,
}

/// The `--set` overrides that point the embedded config at loopback and the sink.
fn overrides(
    ports: Ports,
    sink: SocketAddr,
    decision_wait: Duration,
    num_traces: Option<u64>,
    extra: &[&str],
) -> Vec<String> {
    let Ports {
        grpc,
        http,
        health,
        metrics,
    } = ports;
    let mut sets = vec![
        format!("receivers.otlp.protocols.grpc.endpoint={grpc}"),
        format!("receivers.otlp.protocols.http.endpoint={http}"),
        format!("extensions.health_check.endpoint={health}"),
        format!("service.telemetry.metrics.address={metrics}"),
        format!("exporters.otlp/to.endpoint={sink}"),
        "exporters.otlp/to.compression=none".to_string(),
        format!(
            "processors.tail_sampling.decision_wait={}s",
            decision_wait.as_secs()
        ),
    ];
    if let Some(n) = num_traces {
        sets.push(format!("processors.tail_sampling.num_traces={n}"));
    }
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

fn start(
    bench: &Bench<'_>,
    name: &str,
    decision_wait: Duration,
    num_traces: Option<u64>,
    extra: &[&str],
) -> Result<Gateway> {
    let log = bench.layout.log(name);
    let sink = bench.sink.grpc;
    with_fresh_ports("gateway-collector", || {
        let ports = Ports {
            grpc: free_address()?,
            http: free_address()?,
            health: free_address()?,
            metrics: free_address()?,
        };
        let mut command = Command::new(&bench.layout.gateway);
        for set in overrides(ports, sink, decision_wait, num_traces, extra) {
            command.arg("--set").arg(set);
        }
        let mut guard = ChildGuard::spawn("gateway-collector", &mut command, &log)?;
        guard.wait_listening(ports.grpc, START_TIMEOUT)?;
        guard.wait_listening(ports.metrics, START_TIMEOUT)?;
        let mut gateway = Gateway {
            guard,
            grpc: ports.grpc,
            metrics: ports.metrics,
        };
        gateway.scrape()?;
        Ok(gateway)
    })
}

/// Waits one scrape interval.
fn scrape_pause() -> Result<()> {
    for _ in 0..PAUSES_PER_SCRAPE {
        pause()?;
    }
    Ok(())
}

/// After a load of `accepted` spans: polls until every one of its traces
/// was decided and every sampled span reached the sink (true), or until
/// `decision_wait` + [`SETTLE_LIMIT`] passed (false).
fn settle(
    bench: &mut Bench<'_>,
    gateway: &mut Gateway,
    before: &(Scrape, SinkCounts),
    accepted: u64,
) -> Result<(Scrape, SinkCounts, bool)> {
    let deadline = Instant::now() + THROUGHPUT_WAIT + SETTLE_LIMIT;
    let (sampled_before, not_sampled_before) = before.0.decided();
    loop {
        let scrape = gateway.scrape()?;
        let sink = bench.sink.counts()?;
        let (sampled, not_sampled) = scrape.decided();
        let sampled = sampled.saturating_sub(sampled_before);
        let decided = sampled + not_sampled.saturating_sub(not_sampled_before);
        let done = scrape.traces_on_memory() == 0
            && decided * SPANS_PER_TRACE >= accepted
            && sink.since(&before.1).spans >= sampled * SPANS_PER_TRACE;
        if done || Instant::now() >= deadline {
            return Ok((scrape, sink, done));
        }
        scrape_pause()?;
    }
}

fn throughput_round(bench: &mut Bench<'_>, variant: &Variant) -> Result<Throughput> {
    let log = format!("gateway-{}", variant.name);
    let mut gateway = start(
        bench,
        &log,
        THROUGHPUT_WAIT,
        Some(THROUGHPUT_NUM_TRACES),
        variant.sets,
    )?;
    let pid = gateway.guard.pid();
    let ticks = probe::clock_ticks_per_second();
    let args = load_args(None, None);

    if !bench.settings.warmup.is_zero() {
        let before = (gateway.scrape()?, bench.sink.counts()?);
        let warm = bench.run_loadgen(
            &format!("{log}-warmup"),
            gateway.grpc,
            bench.settings.warmup,
            ITEMS_PER_REQUEST,
            &args,
        )?;
        let (_, _, settled) = settle(bench, &mut gateway, &before, warm.accepted)?;
        if !settled {
            bail!("the warm-up's traces were not all decided and delivered in time");
        }
    }

    let before = (gateway.scrape()?, bench.sink.counts()?);
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let load: LoadgenSummary = bench.run_loadgen(
        &log,
        gateway.grpc,
        bench.settings.duration,
        ITEMS_PER_REQUEST,
        &args,
    )?;
    let (after, sink_after, settled) = settle(bench, &mut gateway, &before, load.accepted)?;
    let cpu_after = cpu_ticks(pid)?;
    let window_seconds = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_bytes(pid)?;
    gateway.guard.check_running()?;

    let (sampled_before, not_sampled_before) = before.0.decided();
    let (sampled, not_sampled) = after.decided();
    let (refused_before, dropped_before) = before.0.refused_and_dropped();
    let (refused, dropped) = after.refused_and_dropped();
    Ok(Throughput {
        sent: load.sent,
        accepted: load.accepted,
        refused_requests: load.refused_requests,
        failed_requests: load.failed_requests,
        loadgen_seconds: load.seconds,
        window_seconds,
        cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / ticks,
        peak_rss_bytes: peak_rss,
        delivered: sink_after.since(&before.1).spans,
        sampled_traces: sampled.saturating_sub(sampled_before),
        not_sampled_traces: not_sampled.saturating_sub(not_sampled_before),
        decided_early: after
            .decided_early()
            .saturating_sub(before.0.decided_early()),
        processor_refused_spans: refused.saturating_sub(refused_before),
        processor_dropped_spans: dropped.saturating_sub(dropped_before),
        settled,
        latency: Latency::from_buckets(
            &after.decision_latency().since(&before.0.decision_latency()),
        ),
        loadgen_cpu_seconds: load.cpu_seconds,
    })
}

/// OTLP-encoded bytes per span of the gateway's load: the same load sent
/// straight to the sink, its gRPC message bytes over its spans.
fn encoded_span_bytes(bench: &mut Bench<'_>) -> Result<f64> {
    let base = bench.sink.counts()?;
    let load = bench.run_loadgen(
        "gateway-span-size",
        bench.sink.grpc,
        Duration::from_secs(30),
        ITEMS_PER_REQUEST,
        &load_args(Some(SIZE_PROBE_SPANS), None),
    )?;
    let (after, drained) = bench.sink.drain(&base, load.accepted)?;
    let got = after.since(&base);
    if !drained || got.spans == 0 {
        bail!(
            "measuring the span size: the sink counted {} of {} spans",
            got.spans,
            load.accepted
        );
    }
    Ok(got.message_bytes as f64 / got.spans as f64)
}

fn memory_run(bench: &mut Bench<'_>) -> Result<Memory> {
    let encoded_span_bytes = encoded_span_bytes(bench)?;
    let mut gateway = start(
        bench,
        "gateway-memory",
        MEMORY_WAIT,
        Some(MEMORY_NUM_TRACES),
        &[],
    )?;
    let pid = gateway.guard.pid();
    // The scrape in `start` ran the metrics path once; read the baseline now.
    let rss_before = rss_bytes(pid)?;
    let total = MEMORY_TRACES * SPANS_PER_TRACE;
    let started = Instant::now();
    let send_time = Duration::from_secs(total.div_ceil(MEMORY_RATE));
    let load = bench.run_loadgen(
        "gateway-memory",
        gateway.grpc,
        send_time + Duration::from_secs(60),
        ITEMS_PER_REQUEST,
        &load_args(Some(total), Some(MEMORY_RATE)),
    )?;
    if load.accepted < total {
        eprintln!(
            "bench:   gateway memory: only {} of {total} spans accepted ({} requests refused, {} failed)",
            load.accepted, load.refused_requests, load.failed_requests
        );
    }
    let expected = load.accepted / SPANS_PER_TRACE;
    let deadline = Instant::now() + BUFFER_LIMIT;
    let scrape = loop {
        let scrape = gateway.scrape()?;
        if scrape.traces_on_memory() >= expected {
            break scrape;
        }
        if Instant::now() >= deadline {
            bail!(
                "sampling_traces_on_memory reached {} of {expected} within {BUFFER_LIMIT:?}",
                scrape.traces_on_memory()
            );
        }
        scrape_pause()?;
    };
    let rss_after = rss_bytes(pid)?;
    let seconds_to_buffer = started.elapsed().as_secs_f64();
    let (sampled, not_sampled) = scrape.decided();
    if sampled + not_sampled > 0 || started.elapsed() >= MEMORY_WAIT {
        bail!(
            "{} traces were decided before RSS was read (decision_wait {MEMORY_WAIT:?})",
            sampled + not_sampled
        );
    }
    Ok(Memory {
        accepted: load.accepted,
        traces_buffered: scrape.traces_on_memory(),
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        buffered_bytes: scrape.buffered_bytes(),
        encoded_span_bytes,
        decided_early: scrape.decided_early(),
        seconds_to_buffer,
    })
}

/// Runs the gateway section: `rounds` throughput rounds of each
/// [`Variant`], then the memory run.
pub(crate) fn run(bench: &mut Bench<'_>) -> Result<GatewayResult> {
    let mut throughput = Vec::new();
    for variant in &VARIANTS {
        let mut rounds = Vec::new();
        let mut error = None;
        for round in 1..=bench.settings.rounds {
            eprintln!(
                "bench: round {round}/{}: gateway throughput, {} (decision_wait {}s) ...",
                bench.settings.rounds,
                variant.label,
                THROUGHPUT_WAIT.as_secs()
            );
            match throughput_round(bench, variant) {
                Ok(t) => {
                    eprintln!(
                        "bench:   {:.0} spans/s, {:.2} CPU-s per M spans, kept {:.1}%, decision latency p99 {}, peak RSS {:.1} MiB{}",
                        t.spans_per_second(),
                        t.cpu_seconds_per_million(),
                        t.kept() * 100.0,
                        show_quantile(t.latency.p99),
                        t.peak_rss_bytes as f64 / MIB,
                        if t.settled { "" } else { " (NOT settled)" }
                    );
                    rounds.push(t);
                }
                Err(e) => {
                    check_interrupted()?;
                    eprintln!("bench:   failed: {e:#}");
                    error = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        throughput.push(VariantResult {
            variant,
            rounds: match error {
                Some(e) => Err(e),
                None => Ok(rounds),
            },
        });
    }
    eprintln!(
        "bench: gateway memory: {MEMORY_TRACES} traces x {SPANS_PER_TRACE} spans buffered (decision_wait {}s) ...",
        MEMORY_WAIT.as_secs()
    );
    let memory = match memory_run(bench) {
        Ok(m) => {
            eprintln!(
                "bench:   {:.0} B of RSS per buffered span, {:.0} B encoded, {:.2}x",
                m.rss_per_span(),
                m.encoded_span_bytes,
                m.rss_ratio()
            );
            Ok(m)
        }
        Err(e) => {
            check_interrupted()?;
            eprintln!("bench:   failed: {e:#}");
            Err(format!("{e:#}"))
        }
    };
    Ok(GatewayResult { throughput, memory })
}

// ---------------------------------------------------------------------------
// Output

fn show_quantile(q: Option<(f64, f64)>) -> String {
    match q {
        None => "-".to_string(),
        Some((_, bound)) if bound.is_infinite() => "> 10 s".to_string(),
        Some((estimate, bound)) => format!("{estimate:.1} ms (<= {bound} ms)"),
    }
}

/// The gateway section as printed.
pub(crate) fn table(settings: &super::Settings, result: &GatewayResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\ngateway: {}", describe());
    let _ = writeln!(
        out,
        "load: {}, {} in flight, {:.1} s (+{:.1} s warm-up), {} round(s)",
        load_description(),
        settings.concurrency,
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.rounds
    );
    for VariantResult { variant, rounds } in &result.throughput {
        let _ = writeln!(out, "throughput, {}:", variant.label);
        throughput_table(&mut out, rounds);
    }
    let _ = writeln!(
        out,
        "memory: {MEMORY_TRACES} traces x {SPANS_PER_TRACE} spans in flight (decision_wait {}s, num_traces {MEMORY_NUM_TRACES}), sent at {MEMORY_RATE} spans/s",
        MEMORY_WAIT.as_secs()
    );
    match &result.memory {
        Err(e) => {
            let _ = writeln!(out, "  failed: {}", first_line(e));
        }
        Ok(m) => {
            let ratio = m.rss_ratio();
            let _ = writeln!(
                out,
                "  RSS growth                   {:>9.1} MiB   (VmRSS {:.1} -> {:.1} MiB, {} traces buffered after {:.1} s)",
                m.rss_growth() / MIB,
                m.rss_before_bytes as f64 / MIB,
                m.rss_after_bytes as f64 / MIB,
                m.traces_buffered,
                m.seconds_to_buffer
            );
            let _ = writeln!(
                out,
                "  RSS per buffered span        {:>9.0} B",
                m.rss_per_span()
            );
            let _ = writeln!(
                out,
                "  OTLP-encoded span            {:>9.0} B     (the same load's request bytes / spans, as the sink received it)",
                m.encoded_span_bytes
            );
            let _ = writeln!(
                out,
                "  accounted by the sampler     {:>9.0} B     (sampling_buffered_bytes / buffered spans)",
                m.accounted_per_span()
            );
            let _ = writeln!(
                out,
                "  RSS per span / encoded size  {:>9.2}x    goal <= {TARGET_RSS_RATIO:.1}x [{}]",
                ratio,
                verdict(ratio <= TARGET_RSS_RATIO)
            );
            if m.decided_early > 0 {
                let _ = writeln!(
                    out,
                    "  note: {} traces decided early (limits reached)",
                    m.decided_early
                );
            }
        }
    }
    out
}

fn throughput_table(out: &mut String, rounds: &Result<Vec<Throughput>, String>) {
    match rounds {
        Err(e) => {
            let _ = writeln!(out, "  throughput: failed: {}", first_line(e));
        }
        Ok(rounds) => match median(rounds) {
            None => {
                let _ = writeln!(out, "  throughput: no rounds");
            }
            Some(t) => {
                let row = |out: &mut String, what: &str, value: String, note: String| {
                    let _ = writeln!(out, "  {what:<28} {value:>12}   {note}");
                };
                row(
                    out,
                    "spans/s received",
                    format!("{:.0}", t.spans_per_second()),
                    format!(
                        "({} accepted of {} sent, {} requests refused, {} failed)",
                        t.accepted, t.sent, t.refused_requests, t.failed_requests
                    ),
                );
                row(
                    out,
                    "CPU-s per million spans",
                    format!("{:.2}", t.cpu_seconds_per_million()),
                    format!(
                        "(gateway process: {:.2} CPU-s over {:.1} s, load until the last kept span reached the sink)",
                        t.cpu_seconds, t.window_seconds
                    ),
                );
                row(
                    out,
                    "kept (sink spans / accepted)",
                    format!("{:.1}%", t.kept() * 100.0),
                    format!(
                        "({} of {} traces sampled{})",
                        t.sampled_traces,
                        t.sampled_traces + t.not_sampled_traces,
                        if t.settled {
                            String::new()
                        } else {
                            "; NOT all decided and delivered in time".to_string()
                        }
                    ),
                );
                row(
                    out,
                    "decision latency p50",
                    show_quantile(t.latency.p50),
                    "(past decision_wait; sampling_decision_latency buckets, interpolated)"
                        .to_string(),
                );
                row(
                    out,
                    "decision latency p99",
                    show_quantile(t.latency.p99),
                    format!(
                        "({} decisions; highest bucket used: <= {} ms)",
                        t.latency.decisions,
                        t.latency
                            .max_bucket
                            .map_or("-".to_string(), |b| b.to_string())
                    ),
                );
                row(
                    out,
                    "peak RSS",
                    format!("{:.1} MiB", t.peak_rss_bytes as f64 / MIB),
                    String::new(),
                );
                if t.decided_early + t.processor_refused_spans + t.processor_dropped_spans > 0 {
                    let _ = writeln!(
                        out,
                        "  note: {} traces decided early, {} spans refused, {} dropped by tail_sampling",
                        t.decided_early, t.processor_refused_spans, t.processor_dropped_spans
                    );
                }
                if rounds.len() > 1 {
                    let _ = writeln!(
                        out,
                        "  (the round with the median CPU-s per million spans; results.json has every round)"
                    );
                }
            }
        },
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn quantile_json(q: Option<(f64, f64)>) -> Json {
    match q {
        None => Json::Null,
        Some((estimate, bound)) => Json::Object(vec![
            ("estimate_ms", Json::float(estimate)),
            ("bucket_upper_bound_ms", Json::float(bound)),
        ]),
    }
}

fn throughput_json(t: &Throughput) -> Json {
    Json::Object(vec![
        (
            "spans_per_second_received",
            Json::float(t.spans_per_second()),
        ),
        (
            "cpu_seconds_per_million_spans",
            Json::float(t.cpu_seconds_per_million()),
        ),
        ("kept_fraction", Json::float(t.kept())),
        ("decision_latency_p50", quantile_json(t.latency.p50)),
        ("decision_latency_p99", quantile_json(t.latency.p99)),
        ("decisions", Json::Int(t.latency.decisions)),
        ("peak_rss_bytes", Json::Int(t.peak_rss_bytes)),
        ("accepted_spans", Json::Int(t.accepted)),
        ("sent_spans", Json::Int(t.sent)),
        ("delivered_spans", Json::Int(t.delivered)),
        ("sampled_traces", Json::Int(t.sampled_traces)),
        ("not_sampled_traces", Json::Int(t.not_sampled_traces)),
        ("decided_early", Json::Int(t.decided_early)),
        (
            "processor_refused_spans",
            Json::Int(t.processor_refused_spans),
        ),
        (
            "processor_dropped_spans",
            Json::Int(t.processor_dropped_spans),
        ),
        ("refused_requests", Json::Int(t.refused_requests)),
        ("failed_requests", Json::Int(t.failed_requests)),
        ("settled", Json::Bool(t.settled)),
        ("cpu_seconds", Json::float(t.cpu_seconds)),
        ("loadgen_seconds", Json::float(t.loadgen_seconds)),
        ("window_seconds", Json::float(t.window_seconds)),
        ("loadgen_cpu_seconds", Json::float(t.loadgen_cpu_seconds)),
    ])
}

fn memory_json(m: &Memory) -> Json {
    Json::Object(vec![
        ("traces_buffered", Json::Int(m.traces_buffered)),
        ("spans_buffered", Json::Int(m.spans_buffered())),
        ("accepted_spans", Json::Int(m.accepted)),
        ("rss_before_bytes", Json::Int(m.rss_before_bytes)),
        ("rss_after_bytes", Json::Int(m.rss_after_bytes)),
        ("rss_bytes_per_buffered_span", Json::float(m.rss_per_span())),
        ("encoded_bytes_per_span", Json::float(m.encoded_span_bytes)),
        ("rss_to_encoded_ratio", Json::float(m.rss_ratio())),
        ("target_ratio", Json::float(TARGET_RSS_RATIO)),
        ("met", Json::Bool(m.rss_ratio() <= TARGET_RSS_RATIO)),
        ("buffered_bytes", Json::Int(m.buffered_bytes)),
        (
            "accounted_bytes_per_span",
            Json::float(m.accounted_per_span()),
        ),
        ("decided_early", Json::Int(m.decided_early)),
        ("seconds_to_buffer", Json::float(m.seconds_to_buffer)),
    ])
}

/// The gateway section of `results.json`.
pub(crate) fn json(result: &GatewayResult) -> Json {
    let throughput = result
        .throughput
        .iter()
        .map(|VariantResult { variant, rounds }| {
            let mut fields = vec![
                ("name", Json::Str(variant.name.into())),
                ("label", Json::Str(variant.label.into())),
                (
                    "extra_sets",
                    Json::Array(
                        variant
                            .sets
                            .iter()
                            .map(|s| Json::Str(s.to_string()))
                            .collect(),
                    ),
                ),
            ];
            match rounds {
                Ok(rounds) => {
                    fields.push(("status", Json::Str("measured".into())));
                    if let Some(t) = median(rounds) {
                        fields.push(("median", throughput_json(t)));
                    }
                    fields.push((
                        "rounds",
                        Json::Array(rounds.iter().map(throughput_json).collect()),
                    ));
                }
                Err(e) => {
                    fields.push(("status", Json::Str("failed".into())));
                    fields.push(("error", Json::Str(e.clone())));
                }
            }
            Json::Object(fields)
        })
        .collect();
    let memory = match &result.memory {
        Ok(m) => {
            let mut fields = vec![("status", Json::Str("measured".into()))];
            if let Json::Object(more) = memory_json(m) {
                fields.extend(more);
            }
            Json::Object(fields)
        }
        Err(e) => Json::Object(vec![
            ("status", Json::Str("failed".into())),
            ("error", Json::Str(e.clone())),
        ]),
    };
    Json::Object(vec![
        ("description", Json::Str(describe())),
        ("load", Json::Str(load_description())),
        (
            "decision_wait_seconds",
            Json::Int(THROUGHPUT_WAIT.as_secs()),
        ),
        (
            "memory_decision_wait_seconds",
            Json::Int(MEMORY_WAIT.as_secs()),
        ),
        ("memory_traces", Json::Int(MEMORY_TRACES)),
        ("memory_num_traces", Json::Int(MEMORY_NUM_TRACES)),
        ("memory_rate_spans_per_second", Json::Int(MEMORY_RATE)),
        ("throughput", Json::Array(throughput)),
        ("memory", memory),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP otelcol_processor_tail_sampling_sampling_traces_on_memory x
# TYPE otelcol_processor_tail_sampling_sampling_traces_on_memory gauge
otelcol_processor_tail_sampling_sampling_traces_on_memory{processor="tail_sampling"} 1200
otelcol_processor_tail_sampling_global_count_traces_sampled_total{processor="tail_sampling",sampled="false"} 90
otelcol_processor_tail_sampling_global_count_traces_sampled_total{processor="tail_sampling",sampled="true"} 10
otelcol_processor_refused_spans_total{processor="batch"} 7
otelcol_processor_refused_spans_total{processor="tail_sampling"} 3
weird{a="x\"y,z",b="2"} 5
plain 1.5e3
otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor="tail_sampling",le="0"} 10
otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor="tail_sampling",le="1"} 60
otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor="tail_sampling",le="5"} 99
otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor="tail_sampling",le="10"} 100
otelcol_processor_tail_sampling_sampling_decision_latency_bucket{processor="tail_sampling",le="+Inf"} 100
"#;

    #[test]
    fn scrapes_parse_with_labels_and_totals() {
        let scrape = Scrape::parse(SAMPLE);
        assert_eq!(scrape.traces_on_memory(), 1200);
        assert_eq!(scrape.decided(), (10, 90));
        assert_eq!(scrape.refused_and_dropped(), (3, 0));
        assert_eq!(scrape.sum("weird", &[("a", "x\"y,z")]), 5.0);
        assert_eq!(scrape.sum("plain", &[]), 1500.0);
        assert_eq!(scrape.sum("missing", &[]), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let buckets = Scrape::parse(SAMPLE).decision_latency();
        assert_eq!(buckets.count(), 100.0);
        // rank 50: bucket (0, 1] holds observations 11..=60.
        let (p50, bound) = buckets.quantile(0.5).expect("observations");
        assert!((p50 - 0.8).abs() < 1e-9, "{p50}");
        assert_eq!(bound, 1.0);
        // rank 99: bucket (1, 5] holds 61..=99.
        let (p99, bound) = buckets.quantile(0.99).expect("observations");
        assert_eq!((p99, bound), (5.0, 5.0));
        // rank 5: the first bucket, bound 0.
        assert_eq!(buckets.quantile(0.05), Some((0.0, 0.0)));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn bucket_deltas_and_overflow() {
        let before = Buckets(vec![(1.0, 5.0), (10.0, 5.0), (f64::INFINITY, 5.0)]);
        let after = Buckets(vec![(1.0, 5.0), (10.0, 5.0), (f64::INFINITY, 9.0)]);
        let window = after.since(&before);
        assert_eq!(window.count(), 4.0);
        assert_eq!(window.quantile(0.5), Some((10.0, f64::INFINITY)));
        assert_eq!(
            Latency::from_buckets(&window).max_bucket,
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn overrides_keep_everything_on_loopback() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let ports = Ports {
            grpc: a(1),
            http: a(2),
            health: a(3),
            metrics: a(4),
        };
        let sets = overrides(ports, a(5), THROUGHPUT_WAIT, Some(7), VARIANTS[1].sets);
        let joined = sets.join("\n");
        assert!(joined.contains("receivers.otlp.protocols.grpc.endpoint=127.0.0.1:1"));
        assert!(joined.contains("service.telemetry.metrics.address=127.0.0.1:4"));
        assert!(joined.contains("exporters.otlp/to.endpoint=127.0.0.1:5"));
        assert!(joined.contains("exporters.otlp/to.compression=none"));
        assert!(joined.contains("processors.tail_sampling.decision_wait=2s"));
        assert!(joined.contains("processors.tail_sampling.num_traces=7"));
        assert!(joined.contains("processors.batch.send_batch_size=8192"));
        assert!(!joined.contains("0.0.0.0"));
    }
}
