//! `gateway-collector`: see the README's "Collectors" section.

/// The gateway's heap allocator.
///
/// The gateway allocates on one thread and frees on another all the time:
/// the receiver's tasks decode what the sampler's shard tasks buffer and
/// drop. glibc's malloc serves that with per-thread arenas and a lock on the
/// way back (in the gateway bench's profile malloc, free and
/// `malloc_consolidate` took 45% of the CPU, with futex wake-ups on arena
/// locks), and musl's, which the static images would otherwise use, is
/// slower still. mimalloc frees to the owning thread's page without a lock:
/// the bench's CPU per span fell from 6.1 to 2.9 CPU-s per million spans.
/// The agent and browser collectors keep the C library's allocator: they
/// mostly forward received bytes, where mimalloc bought no measurable CPU
/// and doubled peak RSS (24 to 48 MiB in the pass-through bench).
///
/// Build with `--no-default-features` for the C library's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    collector::cli::main(collector::role::Role::Gateway)
}
