//! `otel-loadgen`: sends OTLP traces, metrics or logs at a rate (or as fast
//! as the collector takes them) and reports what got through.
//!
//! Requests are generated up front into a pool (distinct trace IDs across the
//! pool) so the generator spends its CPU on sending, not on building data;
//! `--unique` regenerates IDs for every request instead.

mod generate;
mod send;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Wire protocol to send with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    #[value(name = "http/json")]
    HttpJson,
}

/// Signal to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignalArg {
    /// Spans.
    Traces,
    /// Gauge data points.
    Metrics,
    /// Log records.
    Logs,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Send OTLP load to a collector and report what got through"
)]
pub struct Args {
    /// Where to send: host:port (gRPC) or http://host:port (HTTP).
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub endpoint: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: Protocol,
    /// Signal.
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: SignalArg,
    /// Items (spans, data points, log records) per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = collector_core::config::duration::parse)]
    pub duration: Duration,
    /// Stop after this many items (0 = no limit, use --duration).
    #[arg(long, default_value_t = 0)]
    pub total_items: u64,
    /// Items per request.
    #[arg(long, default_value_t = 100)]
    pub items_per_request: usize,
    /// Spans per trace (traces only).
    #[arg(long, default_value_t = 10)]
    pub spans_per_trace: usize,
    /// Service names, comma-separated; requests cycle through them.
    #[arg(long, default_value = "loadgen", value_delimiter = ',')]
    pub services: Vec<String>,
    /// Fraction of traces whose spans have status ERROR.
    #[arg(long, default_value_t = 0.0)]
    pub error_ratio: f64,
    /// Attributes per item.
    #[arg(long, default_value_t = 4)]
    pub attributes: usize,
    /// Bytes per attribute value.
    #[arg(long, default_value_t = 16)]
    pub attribute_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Compression: none or gzip.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Distinct requests generated up front.
    #[arg(long, default_value_t = 256)]
    pub pool: usize,
    /// Generate fresh IDs for every request instead of cycling the pool.
    #[arg(long)]
    pub unique: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Counters shared by the senders.
#[derive(Debug, Default)]
pub struct Tally {
    sent_items: AtomicU64,
    ok_items: AtomicU64,
    ok_requests: AtomicU64,
    failed_requests: AtomicU64,
    refused_requests: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.items_per_request == 0 || args.concurrency == 0 || args.pool == 0 {
        bail!("--items-per-request, --concurrency and --pool must be > 0");
    }
    if !matches!(args.compression.as_str(), "none" | "gzip") {
        bail!("--compression must be none or gzip");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let pool = Arc::new(generate::pool(&args));
    let client = send::Client::new(&args).await?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + args.duration;
    let next_request = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (args, pool, client, tally, next_request) = (
            args.clone(),
            pool.clone(),
            client.clone(),
            tally.clone(),
            next_request.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next_request.fetch_add(1, Ordering::Relaxed);
                let items_before = n * args.items_per_request as u64;
                if args.total_items > 0 && items_before >= args.total_items {
                    break;
                }
                if args.rate > 0 {
                    // Pace by schedule: request n is due at n * items / rate.
                    let due =
                        started + Duration::from_secs_f64(items_before as f64 / args.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                if Instant::now() >= deadline {
                    break;
                }
                let body = if args.unique {
                    generate::request(&args, n)
                } else {
                    pool[(n as usize) % pool.len()].clone()
                };
                let items = args.items_per_request as u64;
                tally.sent_items.fetch_add(items, Ordering::Relaxed);
                match client.send(body).await {
                    send::Outcome::Ok => {
                        tally.ok_items.fetch_add(items, Ordering::Relaxed);
                        tally.ok_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    send::Outcome::Refused => {
                        tally.refused_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    send::Outcome::Failed(e) => {
                        if tally.failed_requests.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("sender task")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = tally.ok_items.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "sent_items": tally.sent_items.load(Ordering::Relaxed),
        "ok_items": ok,
        "ok_requests": tally.ok_requests.load(Ordering::Relaxed),
        "refused_requests": tally.refused_requests.load(Ordering::Relaxed),
        "failed_requests": tally.failed_requests.load(Ordering::Relaxed),
        "seconds": elapsed,
        "items_per_second": ok as f64 / elapsed.max(1e-9),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "sent {} {:?} items in {:.2}s: {} accepted ({:.0}/s), {} requests refused (backpressure), {} failed",
            summary["sent_items"],
            args.signal,
            elapsed,
            ok,
            summary["items_per_second"].as_f64().unwrap_or(0.0),
            summary["refused_requests"],
            summary["failed_requests"],
        );
    }
    Ok(())
}
