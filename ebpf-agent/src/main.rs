//! `ebpf-agent`: HTTP spans and RED metrics from kernel probes, without
//! code changes in the instrumented services. See the README's "eBPF agent"
//! section.
//!
//! It is a collector whose receiver is `ebpf`: the same command line, config
//! schema, processors and exporters as the collectors.

mod attributes;
mod clock;
mod config;
mod default_config;
mod events;
mod http;
mod pods;
mod probe;
mod process;
mod receiver;
mod red;
mod resource;
mod span;

use collector_core::cli::Distribution;
use collector_core::component::{Factories, FactoryError};
use collector_core::extension::health_check::HealthCheckFactory;
use collector_core::processor::{BatchFactory, MemoryLimiterFactory, ResourceFactory};
use std::process::ExitCode;

/// Instrumentation scope of everything the agent produces.
pub(crate) const SCOPE_NAME: &str = "ollyscale-otel/ebpf-agent";

/// Async worker threads unless `--worker-threads` or `TOKIO_WORKER_THREADS`
/// says otherwise: the events loop and the exporter each keep one busy at
/// high rates; more only add stacks and allocator arenas (a DaemonSet pod
/// sees every core of the node).
const WORKER_THREADS: usize = 2;

/// The agent's components: the `ebpf` receiver, the processors and
/// exporters of the collectors.
fn components() -> Result<Factories, FactoryError> {
    let mut factories = Factories::new();
    factories.receiver(receiver::EbpfReceiverFactory)?;
    factories.processor(BatchFactory)?;
    factories.processor(ResourceFactory)?;
    factories.processor(MemoryLimiterFactory)?;
    factories.extension(HealthCheckFactory)?;
    exporters::register(&mut factories).map_err(|exporters::Error::Register(e)| e)?;
    Ok(factories)
}

/// The agent's heap allocator with the `mimalloc` feature; without it, the
/// C library's (see [`MALLOC_ARENAS`] for glibc's settings).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// glibc malloc arenas unless `MALLOC_ARENA_MAX` says otherwise. glibc
/// gives threads arenas of their own; the events loop allocates spans on
/// one worker and the exporter frees them on another, and the freed memory
/// stays in the arenas: at 20,000 requests/s one arena held RSS at 44 MiB
/// where the default (one per thread) reached 65 MiB, for the same CPU per
/// request (README, "eBPF agent"). musl (the static image) has one heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 1;

/// Applies [`MALLOC_ARENAS`] before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc tunable; called on the main
        // thread before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// With `OLLY_MALLOC_TRIM_INTERVAL_MS=N` (glibc only), a thread returns
/// glibc's free pages to the kernel with `malloc_trim(0)` every N ms. For
/// measuring (the bench's variants); off by default.
fn start_malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Some(ms) = std::env::var("OLLY_MALLOC_TRIM_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
    {
        let interval = std::time::Duration::from_millis(ms);
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    // SAFETY: malloc_trim only releases free heap pages;
                    // glibc's malloc is thread-safe.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("ebpf-agent: malloc-trim thread: {e}");
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    start_malloc_trim();
    let default_config = match default_config::from_env() {
        Ok(config) => config,
        Err(reason) => {
            eprintln!("ebpf-agent: {reason}");
            return ExitCode::FAILURE;
        }
    };
    collector_core::cli::main(Distribution {
        binary: "ebpf-agent",
        version: env!("CARGO_PKG_VERSION"),
        about: "HTTP spans and RED metrics from kernel probes, exported as OTLP.",
        default_config,
        factories: components,
        worker_threads: Some(WORKER_THREADS),
    })
}
