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

/// The agent's heap allocator with the `mimalloc` feature (the default;
/// see [`MIMALLOC_OPTIONS`]). Built with `--no-default-features`, the C
/// library's (see [`MALLOC_ARENAS`] for glibc's settings).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc options the agent sets unless their environment variable is
/// set: (option, value, variable). libmimalloc-sys 0.1.49 names neither
/// option, so the numbers are their places in `mi_option_e` of the mimalloc
/// it vendors (v3.3.2, `c_src/mimalloc/v3/include/mimalloc.h`).
///
/// - `mi_option_purge_delay` (15) 0: freed memory is purged (given back to
///   the kernel) at once, not after v3's default delay of 1000 ms
///   (`src/options.c`; the header's comment still says 10, v2's default).
/// - `mi_option_arena_eager_commit` (4) 0: arenas are not committed when
///   reserved.
///
/// At 20,000 requests/s the two together held RSS at 28 MiB where
/// mimalloc's defaults reached 52 MiB and glibc with one arena 45 (README,
/// "eBPF agent"). The v2 mimalloc (feature `v2`) numbers them the same.
#[cfg(feature = "mimalloc")]
const MIMALLOC_OPTIONS: [(
    libmimalloc_sys::mi_option_t,
    std::ffi::c_long,
    &std::ffi::CStr,
); 2] = [
    (15, 0, c"MIMALLOC_PURGE_DELAY"),
    (4, 0, c"MIMALLOC_ARENA_EAGER_COMMIT"),
];

/// Applies [`MIMALLOC_OPTIONS`] when the process loads, before mimalloc
/// initializes. Set from `main` they came too late: mimalloc reads its
/// options when it initializes, in its own load-time constructor (or at
/// the first allocation), and the bench measured the agent with them set in
/// `main` at 46 MiB after 20,000 requests/s against 28 MiB with the same
/// options as environment variables. Load-time constructors run in the
/// order of their priority, then those without one (mimalloc's, built with
/// gcc; with clang it takes 101): this one is in `.init_array.00100`.
#[cfg(all(feature = "mimalloc", target_os = "linux", not(test)))]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static SET_MIMALLOC_OPTIONS_AT_LOAD: extern "C" fn() = set_mimalloc_options;

/// Sets each of [`MIMALLOC_OPTIONS`] whose variable is not set. Runs
/// before `main` (see [`SET_MIMALLOC_OPTIONS_AT_LOAD`]), so it must not
/// allocate: `getenv`, not `std::env`.
#[cfg(feature = "mimalloc")]
// Unit tests read mimalloc's defaults, so they are built without the
// constructor that calls this.
#[cfg_attr(test, allow(dead_code))]
extern "C" fn set_mimalloc_options() {
    for (option, value, variable) in MIMALLOC_OPTIONS {
        // SAFETY: getenv reads the environment, which nothing modifies
        // while the process loads; mi_option_set stores a value in
        // mimalloc's option table and `option` is below `_mi_option_last`.
        unsafe {
            if libc::getenv(variable.as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(option, value);
            }
        }
    }
}

/// glibc malloc arenas unless `MALLOC_ARENA_MAX` says otherwise. glibc
/// gives threads arenas of their own; the events loop allocates spans on
/// one worker and the exporter frees them on another, and the freed memory
/// stays in the arenas: at 20,000 requests/s one arena held RSS at 44 MiB
/// where the default (one per thread) reached 65 MiB, for the same CPU per
/// request (README, "eBPF agent"). musl (the static image) has one heap.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
const MALLOC_ARENAS: libc::c_int = 1;

/// Applies [`MALLOC_ARENAS`] before any thread starts (glibc's allocator
/// only).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc tunable; called on the main
        // thread before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
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

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::MIMALLOC_OPTIONS;

    /// The option numbers name the options meant: the vendored mimalloc v3's
    /// defaults for `purge_delay` (1000) and `arena_eager_commit` (2), read where
    /// `set_mimalloc_options` has not run and no variable overrides them.
    #[test]
    fn mimalloc_option_numbers_match_their_defaults() {
        let defaults = [
            (c"MIMALLOC_PURGE_DELAY", 1000),
            (c"MIMALLOC_ARENA_EAGER_COMMIT", 2),
        ];
        for (name, default) in defaults {
            let (option, _, _) = MIMALLOC_OPTIONS
                .into_iter()
                .find(|(_, _, variable)| *variable == name)
                .unwrap_or_else(|| panic!("{name:?} is not in MIMALLOC_OPTIONS"));
            if std::env::var_os(name.to_str().expect("ASCII")).is_some() {
                continue;
            }
            // SAFETY: mi_option_get reads mimalloc's option table.
            let value = unsafe { libmimalloc_sys::mi_option_get(option) };
            assert_eq!(value, default, "option {option} ({name:?})");
        }
    }
}
