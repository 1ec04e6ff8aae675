//! `otel-sink`: the receiving end of benchmarks.
//!
//! - `otel-sink --listen 127.0.0.1:4317 --stats 127.0.0.1:9999` serves OTLP/gRPC
//!   (traces, metrics and logs `Export`; plain, gzip or zstd), counts the items
//!   of every request and discards them. `GET http://<stats>/` answers the
//!   running totals as JSON: `{"spans":N,"requests":M,...}`.
//! - `otel-sink --relay 127.0.0.1:5000 127.0.0.1:4317` is the byte-relay
//!   floor instead: every TCP connection accepted on the first address is
//!   copied both ways to the second, with no parsing.
//!
//! `--exit-with-parent` ends the process when the process that started it
//! goes away, so that a benchmark killed hard leaves nothing behind.

#[path = "../sink/count.rs"]
mod count;
#[path = "../sink/grpc.rs"]
mod grpc;
#[path = "../sink/relay.rs"]
mod relay;
#[path = "../sink/stats.rs"]
mod stats;
#[path = "../sink/tally.rs"]
mod tally;

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Count and discard OTLP/gRPC requests, or relay TCP bytes (benchmark floor)"
)]
struct Args {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:4317", conflicts_with = "relay")]
    listen: SocketAddr,
    /// HTTP address answering the counts as JSON (off when not given).
    #[arg(long, conflicts_with = "relay")]
    stats: Option<SocketAddr>,
    /// Relay mode: copy bytes between connections accepted on LISTEN and UPSTREAM.
    #[arg(long, num_args = 2, value_names = ["LISTEN", "UPSTREAM"])]
    relay: Option<Vec<SocketAddr>>,
    /// Exit when the parent process exits.
    #[arg(long)]
    exit_with_parent: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.exit_with_parent {
        watch_parent()?;
    }
    match args.relay.as_deref() {
        Some(&[listen, upstream]) => {
            // One thread: the floor should be the least a process can spend on the bytes.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                eprintln!(
                    "otel-sink: relaying {} -> {upstream}",
                    listener.local_addr()?
                );
                relay::run(listener, upstream).await
            })
        }
        Some(_) => anyhow::bail!("--relay takes two addresses: LISTEN UPSTREAM"),
        None => {
            let tally = Arc::new(tally::Tally::default());
            if let Some(address) = args.stats {
                let listener = std::net::TcpListener::bind(address)
                    .with_context(|| format!("binding {address}"))?;
                eprintln!("otel-sink: stats on http://{}/", listener.local_addr()?);
                stats::spawn(listener, tally.clone()).context("starting the stats thread")?;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .with_context(|| format!("binding {}", args.listen))?;
                eprintln!("otel-sink: OTLP/gRPC on {}", listener.local_addr()?);
                grpc::serve(listener, tally).await
            })
        }
    }
}

/// Starts a thread that ends the process once its parent has gone (the
/// process is then re-parented, so its parent id changes).
fn watch_parent() -> anyhow::Result<()> {
    let parent = std::os::unix::process::parent_id();
    std::thread::Builder::new()
        .name("otel-sink-parent".into())
        .spawn(move || {
            loop {
                std::thread::park_timeout(Duration::from_millis(250));
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(0);
                }
            }
        })
        .context("starting the parent watcher")?;
    Ok(())
}
