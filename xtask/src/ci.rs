//! `cargo xtask ci`: what CI runs (`.ci/run` execs this), in order, stopping at the
//! first failure.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::{self, run_inherited};
use crate::{paths, setup};

/// One step of the pipeline.
struct Step {
    name: &'static str,
    action: Action,
}

enum Action {
    /// `cargo xtask setup`, in this process.
    Setup,
    /// A cargo command (arguments after `cargo`), run in the workspace root with
    /// the `OLLY_*` variables set.
    Cargo(Vec<&'static str>),
    /// The test run: nextest when installed, else `cargo test`.
    Tests,
    /// `cargo xtask fuzz --seconds N`, in this process.
    Fuzz(u32),
}

/// Seconds each fuzz target runs in CI: a smoke run over the seeds and what
/// the fuzzer reaches from them (the long runs are in the README).
const CI_FUZZ_SECONDS: u32 = 20;

enum StepResult {
    Ok(Duration),
    Failed(Duration),
    NotRun,
    Skipped,
}

fn steps(skip_setup: bool) -> Vec<(Step, bool)> {
    let all = vec![
        Step {
            name: "setup",
            action: Action::Setup,
        },
        Step {
            name: "fmt",
            action: Action::Cargo(vec!["fmt", "--all", "--check"]),
        },
        Step {
            name: "clippy",
            action: Action::Cargo(vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
        },
        Step {
            name: "build",
            action: Action::Cargo(vec!["build", "--workspace", "--locked", "--bins"]),
        },
        Step {
            name: "doctest",
            action: Action::Cargo(vec!["test", "--workspace", "--doc", "--locked"]),
        },
        Step {
            name: "test",
            action: Action::Tests,
        },
        Step {
            name: "fuzz",
            action: Action::Fuzz(CI_FUZZ_SECONDS),
        },
    ];
    all.into_iter()
        .map(|step| {
            let skip = skip_setup && matches!(step.action, Action::Setup);
            (step, skip)
        })
        .collect()
}

fn nextest_installed() -> bool {
    cmd::succeeds(cmd::cargo().args(["nextest", "--version"]))
}

/// The command a cargo-running step runs.
fn cargo_command(args: &[&str]) -> Command {
    let mut command = cmd::cargo();
    command
        .args(args)
        .current_dir(paths::repo_root())
        .envs(paths::test_env())
        // A CI build starts from nothing and runs once: incremental state
        // would only take disk (GiBs across the test binaries).
        .env("CARGO_INCREMENTAL", "0");
    command
}

fn test_command() -> Command {
    if nextest_installed() {
        // `--no-tests=warn`: a workspace (or a CI run) with no test yet passes with a
        // warning instead of nextest's exit code 4.
        cargo_command(&[
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
            "--no-tests=warn",
        ])
    } else {
        cargo_command(&["test", "--workspace", "--locked"])
    }
}

fn run_step(step: &Step) -> Result<()> {
    match &step.action {
        Action::Setup => setup::run(),
        Action::Fuzz(seconds) => crate::fuzz::run_for(*seconds),
        Action::Cargo(args) => run_inherited(&mut cargo_command(args)),
        Action::Tests => run_tests(),
    }
}

/// Runs the tests with their output streamed as usual, keeping nextest's
/// closing `Summary` line so CI can end on a plain `N passed, N failed` line.
fn run_tests() -> Result<()> {
    use std::io::{BufRead, BufReader};
    let mut command = test_command();
    let shown = cmd::describe(&command);
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not start `{shown}`: {e}"))?;
    let mut summary = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.trim_start().starts_with("Summary [") {
                summary = Some(line);
            }
        }
    }
    let status = child.wait()?;
    if let Some(counts) = summary.as_deref().and_then(plain_counts) {
        *LAST_TEST_COUNTS.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
    }
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Test counts of the last test step, printed as CI's closing line.
static LAST_TEST_COUNTS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// `Summary [ 50.390s] 169 tests run: 166 passed, 3 failed, 0 skipped` ->
/// `166 passed, 3 failed, 0 skipped`.
fn plain_counts(summary: &str) -> Option<String> {
    let after = summary.split_once("tests run:")?.1;
    let number = |word: &str| -> u64 {
        after
            .split(',')
            .find_map(|part| {
                let mut it = part.split_whitespace();
                let n = it.next()?.parse().ok()?;
                (it.next()? == word).then_some(n)
            })
            .unwrap_or(0)
    };
    Some(format!(
        "{} passed, {} failed, {} skipped",
        number("passed"),
        number("failed"),
        number("skipped")
    ))
}

fn describe_step(step: &Step) -> String {
    match &step.action {
        Action::Setup => "cargo xtask setup".to_string(),
        Action::Fuzz(seconds) => format!("cargo xtask fuzz --seconds {seconds}"),
        Action::Cargo(args) => format!("cargo {}", args.join(" ")),
        Action::Tests if nextest_installed() => cmd::describe(&test_command()),
        Action::Tests => "cargo test --workspace --locked".to_string(),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Runs the pipeline. Errors name the step that failed.
pub(crate) fn run(skip_setup: bool) -> Result<()> {
    let steps = steps(skip_setup);
    let total = steps.len();
    let started = Instant::now();
    let mut results: Vec<(&'static str, StepResult)> = Vec::new();
    let mut failure: Option<(String, anyhow::Error)> = None;

    println!("ci: exporting to the steps:");
    for (var, value) in paths::test_env() {
        println!("  {var}={}", cmd::shell_quote(&value));
    }

    for (index, (step, skip)) in steps.iter().enumerate() {
        if *skip {
            println!(
                "==> [{}/{total}] {}: skipped (--skip-setup)",
                index + 1,
                step.name
            );
            results.push((step.name, StepResult::Skipped));
            continue;
        }
        if failure.is_some() {
            results.push((step.name, StepResult::NotRun));
            continue;
        }
        println!(
            "==> [{}/{total}] {}: {}",
            index + 1,
            step.name,
            describe_step(step)
        );
        let step_started = Instant::now();
        let outcome = run_step(step);
        let took = step_started.elapsed();
        match outcome {
            Ok(()) => {
                println!("<== {} ok in {}", step.name, seconds(took));
                results.push((step.name, StepResult::Ok(took)));
            }
            Err(err) => {
                println!("<== {} FAILED after {}", step.name, seconds(took));
                results.push((step.name, StepResult::Failed(took)));
                failure = Some((step.name.to_string(), err));
            }
        }
    }

    println!();
    println!("ci summary");
    println!("  {:<10} {:<8} {:>9}", "step", "result", "time");
    for (name, result) in &results {
        let (label, time) = match result {
            StepResult::Ok(d) => ("ok", seconds(*d)),
            StepResult::Failed(d) => ("FAILED", seconds(*d)),
            StepResult::NotRun => ("not run", String::new()),
            StepResult::Skipped => ("skipped", String::new()),
        };
        println!("  {name:<10} {label:<8} {time:>9}");
    }
    println!(
        "  {:<10} {:<8} {:>9}",
        "total",
        "",
        seconds(started.elapsed())
    );

    if let Some(counts) = LAST_TEST_COUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        println!("tests: {counts}");
    }
    if let Some((name, err)) = failure {
        bail!("ci failed at step `{name}`: {err:#}");
    }
    println!("ci: all steps passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_setup_skips_only_setup() {
        let skipped: Vec<&str> = steps(true)
            .iter()
            .filter(|(_, skip)| *skip)
            .map(|(s, _)| s.name)
            .collect();
        assert_eq!(skipped, ["setup"]);
        assert!(steps(false).iter().all(|(_, skip)| !skip));
    }

    #[test]
    fn nextest_summary_becomes_a_plain_line() {
        assert_eq!(
            plain_counts("     Summary [  50.390s] 169 tests run: 166 passed, 3 failed, 0 skipped")
                .as_deref(),
            Some("166 passed, 3 failed, 0 skipped")
        );
        assert_eq!(
            plain_counts("Summary [ 1.0s] 8 tests run: 8 passed, 0 skipped").as_deref(),
            Some("8 passed, 0 failed, 0 skipped")
        );
    }

    #[test]
    fn order_is_setup_fmt_clippy_build_doctest_test_fuzz() {
        let names: Vec<&str> = steps(false).iter().map(|(s, _)| s.name).collect();
        assert_eq!(
            names,
            ["setup", "fmt", "clippy", "build", "doctest", "test", "fuzz"]
        );
    }
}
