//! The agent's allocator settings, read back from mimalloc itself: with
//! `MIMALLOC_VERBOSE=1` mimalloc prints every option's value when it
//! initializes, which is before `main` and after the agent's load-time
//! constructor (`main.rs`, `SET_MIMALLOC_OPTIONS_AT_LOAD`).
#![cfg(feature = "mimalloc")]

use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_ebpf-agent");

/// mimalloc's option lines (`option 'purge_delay': 0 `) of `ebpf-agent
/// --version` run with `env`.
fn options_at_start(env: &[(&str, &str)]) -> String {
    let output = Command::new(AGENT)
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .envs(env.iter().copied())
        .output()
        .expect("ebpf-agent runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("option '"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_option(options: &str, name: &str, value: i64) -> bool {
    let wanted = format!("option '{name}': {value}");
    options.lines().any(|line| line.trim_end() == wanted)
}

#[test]
fn mimalloc_starts_with_purge_delay_and_arena_eager_commit_off() {
    let options = options_at_start(&[]);
    assert!(has_option(&options, "purge_delay", 0), "{options}");
    assert!(has_option(&options, "arena_eager_commit", 0), "{options}");
}

#[test]
fn the_environment_overrides_the_agent_s_mimalloc_options() {
    let options = options_at_start(&[
        ("MIMALLOC_PURGE_DELAY", "250"),
        ("MIMALLOC_ARENA_EAGER_COMMIT", "1"),
    ]);
    assert!(has_option(&options, "purge_delay", 250), "{options}");
    assert!(has_option(&options, "arena_eager_commit", 1), "{options}");
}
