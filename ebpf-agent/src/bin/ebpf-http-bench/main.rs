//! `ebpf-http-bench`: an HTTP/1.1 server (hyper) and a paced load client,
//! for the eBPF agent's tests and for `cargo xtask bench` (latency with and
//! without the agent).
//!
//! ```text
//! ebpf-http-bench serve --listen 127.0.0.1:8080
//! ebpf-http-bench load --target 127.0.0.1:8080 --rate 5000 --duration 10s --connections 8
//! ebpf-http-bench syscalls --count 2000000
//! ebpf-http-bench load --target 127.0.0.1:8080 --rate 5000 --hooks socket
//! ```
//!
//! The server answers `/status/<code>` with that code, `/chunked` in three
//! chunks, `POST` bodies with their length, anything else with `ok`; it
//! prints `listening <address>` once it accepts connections. The load client
//! sends `GET <path>` on keep-alive connections at a fixed total rate
//! (requests are due on a schedule, so a slow answer does not lower the
//! rate it tries) and prints one JSON line: requests sent, answered 2xx,
//! failed, and the latency percentiles in microseconds.
//!
//! `syscalls` measures what a process pays per syscall: one-byte reads
//! from /dev/zero and writes to /dev/null (as `dd bs=1`), `--count` pairs,
//! five rounds; it prints the CPU time (user + system, from getrusage) per
//! syscall of the fastest round, in ns, as one JSON line. Run with and
//! without the agent, the difference is the node tax: what the probes cost
//! a process they do not trace.
//!
//! `load --hooks socket|packet` (root) loads a candidate hook design
//! ([`candidates`]) for the run, following the target's port, and adds what
//! the kernel measured of it to the JSON line under `hooks`. `hold-hooks`
//! loads one, prints `attached` and holds it until killed, for measuring
//! what it costs other processes (the node tax: `syscalls` in another
//! process; with the hooks loaded in the loop's own process, beside their
//! drain thread, each syscall of the loop measured about 45 ns dearer here,
//! which is not what other processes pay).

mod candidates;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "HTTP server and load client for measuring the eBPF agent")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP/1.1 until killed.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Send paced requests and report.
    Load {
        /// The server.
        #[arg(long)]
        target: SocketAddr,
        /// Request path.
        #[arg(long, default_value = "/load")]
        path: String,
        /// Requests per second, all connections together.
        #[arg(long)]
        rate: u64,
        /// How long to send (Go-style duration: 10s, 500ms).
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 8)]
        connections: u64,
        /// Load a candidate hook design, following the target's port.
        #[arg(long, value_enum)]
        hooks: Option<candidates::Design>,
        /// With --hooks: pass data without writing records.
        #[arg(long, requires = "hooks")]
        no_records: bool,
        /// With --hooks packet: the interface to hook.
        #[arg(long, default_value = "lo")]
        hooks_interface: String,
    },
    /// Measure the CPU cost of a read/write syscall pair of this process.
    Syscalls {
        /// read+write pairs per round.
        #[arg(long, default_value_t = 2_000_000)]
        count: u64,
    },
    /// Load a candidate hook design and hold it until killed, so that
    /// other processes' costs can be measured with it loaded.
    HoldHooks {
        /// The design.
        #[arg(long, value_enum)]
        design: candidates::Design,
        /// The server port it follows.
        #[arg(long)]
        port: u16,
        /// With the packet design: the interface to hook.
        #[arg(long, default_value = "lo")]
        interface: String,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match &args.command {
        Command::Syscalls { count } => {
            let ns = syscall_cost(*count)?;
            println!("{{\"ns_per_syscall\":{ns:.1},\"count\":{count}}}");
            return Ok(());
        }
        Command::HoldHooks {
            design,
            port,
            interface,
        } => {
            let _hooks = candidates::Hooks::attach(*design, *port, interface, true)?;
            println!("attached");
            loop {
                std::thread::park();
            }
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.command {
        Command::Serve { listen } => runtime.block_on(serve(listen)),
        Command::Load {
            target,
            path,
            rate,
            duration,
            connections,
            hooks,
            no_records,
            hooks_interface,
        } => {
            let duration = collector_core::config::duration::parse(&duration)
                .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
            if rate == 0 || connections == 0 {
                bail!("--rate and --connections must be > 0");
            }
            let hooks = hooks
                .map(|design| {
                    candidates::Hooks::attach(design, target.port(), &hooks_interface, !no_records)
                })
                .transpose()?;
            let mut report = runtime.block_on(load(target, &path, rate, duration, connections))?;
            if let Some(hooks) = hooks {
                report["hooks"] = hooks.finish()?;
            }
            println!("{report}");
            Ok(())
        }
        Command::Syscalls { .. } | Command::HoldHooks { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// CPU time this process has used (user + system), in ns.
fn cpu_ns() -> Result<u128> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1_000;
    Ok(ns(usage.ru_utime) + ns(usage.ru_stime))
}

/// The fastest of five rounds of `count` one-byte read+write pairs, in CPU
/// ns per syscall. CPU time, not wall time, so a busy machine slows it less.
fn syscall_cost(count: u64) -> Result<f64> {
    use std::io::{Read, Write};
    if count == 0 {
        bail!("--count must be > 0");
    }
    let mut zero = std::fs::File::open("/dev/zero").context("/dev/zero")?;
    let mut null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    let mut byte = [0u8; 1];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let before = cpu_ns()?;
        for _ in 0..count {
            zero.read_exact(&mut byte)?;
            null.write_all(&byte)?;
        }
        let spent = (cpu_ns()? - before) as f64;
        best = best.min(spent / (2 * count) as f64);
    }
    Ok(best)
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

async fn handle(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    if request.method() == hyper::Method::POST {
        let length = match request.into_body().collect().await {
            Ok(body) => body.to_bytes().len(),
            Err(_) => 0,
        };
        return Ok(Response::new(full(format!("{length}\n"))));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = Response::new(full("status\n"));
        *response.status_mut() = status;
        return Ok(response);
    }
    if path == "/chunked" {
        // A body without a known length goes out chunked.
        let parts = ["first ", "second ", "third\n"]
            .map(|p| Ok::<_, Infallible>(Frame::data(Bytes::from_static(p.as_bytes()))));
        let body = StreamBody::new(futures::stream::iter(parts));
        return Ok(Response::new(BodyExt::boxed(body)));
    }
    Ok(Response::new(full("ok\n")))
}

async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper::service::service_fn(handle))
                .await;
        });
    }
}

/// What one connection's requests came to.
#[derive(Default)]
struct Outcome {
    sent: u64,
    ok: u64,
    failed: u64,
    latencies_us: Vec<u64>,
}

/// Reads one response with a `Content-Length` body; its status.
async fn read_response(reader: &mut BufReader<TcpStream>, line: &mut String) -> Result<u16> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        bail!("connection closed");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("content-length")?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(status)
}

async fn connection(
    target: SocketAddr,
    request: Vec<u8>,
    interval: Duration,
    offset: Duration,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let Ok(stream) = TcpStream::connect(target).await else {
        return outcome;
    };
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut due = Instant::now() + offset;
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        due += interval;
        let started = Instant::now();
        outcome.sent += 1;
        let sent = reader.get_mut().write_all(&request).await;
        match sent.map_err(anyhow::Error::from) {
            Ok(()) => match read_response(&mut reader, &mut line).await {
                Ok(status) if (200..300).contains(&status) => {
                    outcome.ok += 1;
                    outcome
                        .latencies_us
                        .push(started.elapsed().as_micros() as u64);
                }
                Ok(_) => outcome.failed += 1,
                Err(_) => {
                    outcome.failed += 1;
                    break;
                }
            },
            Err(_) => {
                outcome.failed += 1;
                break;
            }
        }
    }
    outcome
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn load(
    target: SocketAddr,
    path: &str,
    rate: u64,
    duration: Duration,
    connections: u64,
) -> Result<serde_json::Value> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    let per_connection = Duration::from_secs_f64(connections as f64 / rate as f64);
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            // Spread the connections' schedules over one interval.
            let offset = per_connection.mul_f64(i as f64 / connections as f64);
            tokio::spawn(connection(
                target,
                request.clone(),
                per_connection,
                offset,
                end,
            ))
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        let outcome = task.await?;
        total.sent += outcome.sent;
        total.ok += outcome.ok;
        total.failed += outcome.failed;
        total.latencies_us.extend(outcome.latencies_us);
    }
    let elapsed = start.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    Ok(serde_json::json!({
        "sent": total.sent,
        "ok": total.ok,
        "failed": total.failed,
        "seconds": elapsed,
        "p50_us": percentile(&total.latencies_us, 0.50),
        "p99_us": percentile(&total.latencies_us, 0.99),
    }))
}
