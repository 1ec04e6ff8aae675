//! `cargo xtask fuzz [--seconds N] [--only a,b]`: runs every fuzz target of
//! `fuzz/` (cargo fuzz, AddressSanitizer, on the probe's nightly) for N
//! seconds each, starting from its committed seeds (`fuzz/corpus/<target>/seed-*`),
//! and prints what each did: executions, coverage, corpus size. A crash, a
//! leak, a timeout (an input running over 10 s) or running out of memory
//! fails the run, with the input saved under `fuzz/artifacts/<target>/`.
//!
//! Inputs the fuzzer finds go to `fuzz/target/corpus/<target>` (kept between
//! runs, not committed), so the tree stays clean and a longer run resumes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cmd, paths, setup::PROBE_TOOLCHAIN};

/// Every target in `fuzz/Cargo.toml`, in the order they run.
pub(crate) const TARGETS: [&str; 6] = [
    "otlp_protobuf",
    "otlp_json",
    "config_loader",
    "opamp_message",
    "file_storage_record",
    "ebpf_http",
];

/// An input running longer than this is a hang.
const TIMEOUT_SECONDS: u32 = 10;
/// Memory a target may use (libFuzzer's own limit, in MiB).
const RSS_LIMIT_MB: u32 = 2048;

#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Targets to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// What one target did, from libFuzzer's closing lines.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    executions: u64,
    coverage: u64,
    features: u64,
    corpus: u64,
}

/// Every target for `seconds` (CI's step).
pub(crate) fn run_for(seconds: u32) -> Result<()> {
    run(FuzzArgs {
        seconds,
        only: Vec::new(),
    })
}

pub(crate) fn run(args: FuzzArgs) -> Result<()> {
    for name in &args.only {
        if !TARGETS.contains(&name.as_str()) {
            bail!(
                "unknown fuzz target {name:?}; targets: {}",
                TARGETS.join(", ")
            );
        }
    }
    let selected: Vec<&str> = TARGETS
        .into_iter()
        .filter(|t| args.only.is_empty() || args.only.iter().any(|o| o == t))
        .collect();
    let root = paths::repo_root();
    let fuzz_dir = root.join("fuzz");
    eprintln!(
        "fuzz: building {} target(s) with cargo fuzz (+{PROBE_TOOLCHAIN})",
        selected.len()
    );
    cmd::run_inherited(
        fuzz_command(&root)
            .args(["build", "--fuzz-dir"])
            .arg(&fuzz_dir),
    )?;
    let mut rows = Vec::new();
    for target in selected {
        let found = fuzz_dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&found).with_context(|| format!("creating {}", found.display()))?;
        let seeds = fuzz_dir.join("corpus").join(target);
        eprintln!("fuzz: {target} for {}s ...", args.seconds);
        let started = Instant::now();
        let output = fuzz_command(&root)
            .args(["run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&found)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-timeout={TIMEOUT_SECONDS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg("-print_final_stats=1")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed ({}); the input is under fuzz/artifacts/{target}/:\n{}",
                output.status,
                tail.join("\n")
            );
        }
        let outcome = parse_outcome(&log);
        eprintln!(
            "fuzz:   {} executions, cov {}, ft {}, corpus {} ({:.0}s)",
            outcome.executions,
            outcome.coverage,
            outcome.features,
            outcome.corpus,
            started.elapsed().as_secs_f64()
        );
        rows.push((target, outcome));
    }
    println!(
        "\n{:<22} {:>12} {:>8} {:>8} {:>8}",
        "target", "executions", "cov", "ft", "corpus"
    );
    for (target, o) in &rows {
        println!(
            "{target:<22} {:>12} {:>8} {:>8} {:>8}",
            o.executions, o.coverage, o.features, o.corpus
        );
    }
    println!("fuzz: every target ran {}s without a failure", args.seconds);
    Ok(())
}

/// `cargo +<probe nightly> fuzz` from the repository root.
fn fuzz_command(root: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg(format!("+{PROBE_TOOLCHAIN}"))
        .arg("fuzz")
        .current_dir(root);
    // The stable toolchain's cargo must not be picked up through the
    // environment rustup sets for `cargo xtask`.
    command.env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    command
}

/// Reads libFuzzer's `Done N runs` and last `cov: ... ft: ... corp: N/...`
/// status lines.
fn parse_outcome(log: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("Done ") {
            outcome.executions = first_number(rest).unwrap_or(outcome.executions);
        }
        if line.starts_with('#') {
            let field = |name: &str| {
                line.split_whitespace()
                    .skip_while(|w| *w != name)
                    .nth(1)
                    .and_then(first_number)
            };
            if let Some(cov) = field("cov:") {
                outcome.coverage = cov;
            }
            if let Some(ft) = field("ft:") {
                outcome.features = ft;
            }
            if let Some(corpus) = field("corp:") {
                outcome.corpus = corpus;
            }
        }
    }
    outcome
}

fn first_number(text: &str) -> Option<u64> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_stats_are_read() {
        let log = "\
INFO: seed corpus: files: 4 min: 100b max: 2000b total: 4000b rss: 40Mb
#5\tINITED cov: 812 ft: 1200 corp: 4/4000b exec/s: 0 rss: 45Mb
#65536\tpulse  cov: 1503 ft: 3321 corp: 211/50Kb lim: 4096 exec/s: 21845 rss: 120Mb
#80000\tNEW    cov: 1510 ft: 3340 corp: 215/51Kb lim: 4096 exec/s: 20000 rss: 121Mb L: 12/300 MS: 1 ChangeBit-
Done 81234 runs in 4 second(s)
stat::number_of_executed_units: 81234
";
        assert_eq!(
            parse_outcome(log),
            Outcome {
                executions: 81234,
                coverage: 1510,
                features: 3340,
                corpus: 215,
            }
        );
    }

    #[test]
    fn every_target_is_in_the_fuzz_manifest_and_has_seeds() {
        let fuzz = paths::repo_root().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} missing from fuzz/Cargo.toml"
            );
            let seeds = std::fs::read_dir(fuzz.join("corpus").join(target))
                .expect("seed dir")
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"))
                .count();
            assert!(seeds > 0, "{target} has no committed seed");
        }
    }
}
