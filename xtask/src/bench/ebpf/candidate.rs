//! The hook candidates (issue 15, part 1: "measure each candidate before
//! choosing"): `ebpf-http-bench load --hooks DESIGN` loads a candidate for
//! the length of the load and reports what the kernel measured of it.
//!
//! - `socket`: `sock_ops` on the root cgroup puts the server's accepted
//!   connections in a sockhash; `sk_msg` (sends) and an `sk_skb` stream
//!   verdict (received segments) on it copy first bytes.
//! - `packet`: a TC classifier (TCX) on loopback's ingress copies the first
//!   payload bytes of the segments to and from the server's port.
//!
//! Both run only for the server's traffic (the packet hook: for every
//! packet on the interface, returning at once for other ports), so their
//! run time is the server's: no subtraction of other processes' runs as for
//! the agent's syscall probes.
//!
//! Each rate is run twice: with records (first bytes copied into a ring
//! buffer, as the agent's captures) and without (the hooks pass everything:
//! what the hook type alone costs). The node tax is measured with the hooks
//! loaded, beside a loop without them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_yaml_ng::Value;

use super::{Load, TARGET_ADDED_P99_US, TARGET_NODE_TAX_NS, TARGET_REQUEST_NS, syscall_cost};
use crate::bench::Bench;
use crate::bench::START_TIMEOUT;
use crate::bench::children::{ChildGuard, pause};
use crate::bench::report::{Json, verdict};

/// A candidate: its design name and programs, in the order printed.
type Design = (&'static str, &'static [&'static str]);

/// The candidates measured.
const DESIGNS: [Design; 2] = [
    (
        "socket",
        &["socket_receive", "socket_send", "socket_established"],
    ),
    ("packet", &["packet_ingress"]),
];

/// What one `load --hooks` run reported of the hooks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hooks {
    /// Per program: kernel ns and runs, in the design's order.
    programs: Vec<(u64, u64)>,
    records: u64,
    lost: u64,
}

impl Hooks {
    fn parse(report: &Value, programs: &[&str]) -> Result<Hooks> {
        let hooks = report.get("hooks").context("no hooks in the load report")?;
        let number = |value: Option<&Value>, what: &str| {
            value
                .and_then(Value::as_u64)
                .with_context(|| format!("no {what} in the hooks report"))
        };
        let programs = programs
            .iter()
            .map(|name| {
                let program = hooks.get("programs").and_then(|p| p.get(*name));
                Ok((
                    number(program.and_then(|p| p.get("run_time_ns")), name)?,
                    number(program.and_then(|p| p.get("runs")), name)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Hooks {
            programs,
            records: number(hooks.get("records"), "records")?,
            lost: number(hooks.get("ringbuf_full"), "ringbuf_full")?,
        })
    }

    fn ns(&self) -> u64 {
        self.programs.iter().map(|(ns, _)| ns).sum()
    }
}

/// One rate: with records and without.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    rate: u64,
    /// The same rate without any probe (from the agent's steps).
    plain: Load,
    traced: Load,
    hooks: Hooks,
    bare: Load,
    bare_hooks: Hooks,
}

impl Step {
    /// Hook time per request, with records: the target's measure.
    fn ns_per_request(&self) -> f64 {
        self.hooks.ns() as f64 / self.traced.ok.max(1) as f64
    }

    fn bare_ns_per_request(&self) -> f64 {
        self.bare_hooks.ns() as f64 / self.bare.ok.max(1) as f64
    }
}

/// What one candidate's runs measured.
#[derive(Debug)]
pub(crate) struct Candidate {
    design: Design,
    /// CPU ns per syscall of an untraced process without probes, measured
    /// right before [`Candidate::tax`] so that both see the same machine.
    no_hooks: f64,
    /// The same with the hooks loaded.
    tax: f64,
    steps: Vec<Step>,
}

/// One `ebpf-http-bench load --hooks` run.
fn load(
    bench: &Bench<'_>,
    (design, programs): Design,
    server: SocketAddr,
    rate: u64,
    records: bool,
) -> Result<(Load, Hooks)> {
    let name = format!(
        "ebpf-load-{rate}-{design}-{}",
        if records { "records" } else { "bare" }
    );
    let mut extra = vec!["--hooks", design];
    if !records {
        extra.push("--no-records");
    }
    let text = super::load_with(bench, &name, server, rate, &extra)?;
    let report: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("the load report {text:?} is not JSON"))?;
    Ok((Load::parse(&text)?, Hooks::parse(&report, programs)?))
}

/// `ebpf-http-bench hold-hooks`: the `design` hooks loaded by a process of
/// their own (the node-tax loop runs in another), once it says they are
/// attached. Killed when dropped.
fn hold(bench: &Bench<'_>, design: &str, port: u16) -> Result<ChildGuard> {
    let name = format!("ebpf-hold-{design}-hooks");
    let mut command = Command::new(&bench.layout.http_bench);
    command.args([
        "hold-hooks",
        "--design",
        design,
        "--port",
        &port.to_string(),
    ]);
    let mut guard = ChildGuard::spawn(&name, &mut command, &bench.layout.log(&name))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = guard.try_exit()? {
            bail!("{name} exited ({status}): {}", guard.log_tail());
        }
        let log = std::fs::read_to_string(guard.log()).unwrap_or_default();
        if log.lines().any(|line| line == "attached") {
            return Ok(guard);
        }
        if Instant::now() >= deadline {
            bail!("{name} did not attach: {}", guard.log_tail());
        }
        pause()?;
    }
}

/// Runs each candidate at each rate of `plain` (rate, load without
/// probes) against the server at `server`; `kernel.bpf_stats_enabled` must
/// be on. A candidate that fails is reported as such.
pub(crate) fn measure(
    bench: &Bench<'_>,
    server: SocketAddr,
    plain: &[(u64, Load)],
) -> Vec<Result<Candidate, String>> {
    DESIGNS
        .into_iter()
        .map(|design| {
            measure_one(bench, design, server, plain).map_err(|e| {
                eprintln!("bench: ebpf: the {} hook candidate failed: {e:#}", design.0);
                format!("{e:#}")
            })
        })
        .collect()
}

fn measure_one(
    bench: &Bench<'_>,
    design: Design,
    server: SocketAddr,
    plain: &[(u64, Load)],
) -> Result<Candidate> {
    let no_hooks = syscall_cost(bench)?;
    let tax = {
        let _held = hold(bench, design.0, server.port())?;
        syscall_cost(bench)?
    };
    let mut steps = Vec::new();
    for (rate, plain) in plain {
        eprintln!(
            "bench: ebpf: {rate} requests/s with the {} hook candidate",
            design.0
        );
        let (traced, hooks) = load(bench, design, server, *rate, true)?;
        if hooks.records < 2 * traced.ok {
            bail!(
                "the {} hooks wrote {} records for {} requests (one per request and response expected)",
                design.0,
                hooks.records,
                traced.ok
            );
        }
        let (bare, bare_hooks) = load(bench, design, server, *rate, false)?;
        steps.push(Step {
            rate: *rate,
            plain: plain.clone(),
            traced,
            hooks,
            bare,
            bare_hooks,
        });
    }
    Ok(Candidate {
        design,
        no_hooks,
        tax,
        steps,
    })
}

/// The candidate's lines of the report.
pub(crate) fn table(candidate: &Candidate) -> String {
    let mut out = String::new();
    let (design, programs) = candidate.design;
    let what = if design == "socket" {
        "sock_ops on the root cgroup puts the server's accepted connections in a sockhash; sk_msg (sends) and an sk_skb stream verdict (received segments) on it copy first bytes"
    } else {
        "a TC classifier (TCX) on loopback's ingress copies the first payload bytes of segments to and from the server's port"
    };
    let _ = writeln!(
        out,
        "{design} hook candidate (not used by the agent): {what} into a ring buffer, as the agent's captures; same server and load"
    );
    let _ = writeln!(
        out,
        "node tax: no probes {:.1} ns per syscall, the hooks loaded {:.1} (+{:.1}); target under +{TARGET_NODE_TAX_NS:.0}: {}",
        candidate.no_hooks,
        candidate.tax,
        candidate.tax - candidate.no_hooks,
        verdict(candidate.tax - candidate.no_hooks < TARGET_NODE_TAX_NS),
    );
    let _ = writeln!(
        out,
        "| requests/s (done) | p50 / p99 without | p50 / p99 with hooks | hook ns / request, with records (hooks alone) | ns/run: {} (runs) | records / requests | lost |",
        programs.join(" / ")
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    for s in &candidate.steps {
        let per_run: Vec<String> = s
            .hooks
            .programs
            .iter()
            .map(|(ns, runs)| format!("{:.0}", *ns as f64 / (*runs).max(1) as f64))
            .collect();
        let runs: Vec<String> = s
            .hooks
            .programs
            .iter()
            .map(|(_, runs)| runs.to_string())
            .collect();
        let _ = writeln!(
            out,
            "| {} ({:.0}) | {} / {} µs | {} / {} µs | {:.0} ({:.0}) | {} ({}) | {} / {} | {} |",
            s.rate,
            s.traced.ok as f64 / s.traced.seconds,
            s.plain.p50_us,
            s.plain.p99_us,
            s.traced.p50_us,
            s.traced.p99_us,
            s.ns_per_request(),
            s.bare_ns_per_request(),
            per_run.join(" / "),
            runs.join(" / "),
            s.hooks.records,
            s.traced.ok,
            s.hooks.lost,
        );
    }
    for (rate, target) in TARGET_REQUEST_NS {
        if let Some(s) = candidate.steps.iter().find(|s| s.rate == rate) {
            let ns = s.ns_per_request();
            let _ = writeln!(
                out,
                "{design} candidate: hook time per request at {rate}/s: {ns:.0} ns (target under {target:.0}): {}",
                verdict(ns < target)
            );
        }
    }
    if let Some(s) = candidate.steps.iter().find(|s| s.rate == 5_000) {
        let added = s.traced.p99_us.saturating_sub(s.plain.p99_us);
        let _ = writeln!(
            out,
            "{design} candidate: p99 latency added at 5000/s: {added} µs (target under {TARGET_ADDED_P99_US}): {}",
            verdict(added < TARGET_ADDED_P99_US)
        );
    }
    out
}

pub(crate) fn json(candidate: &Candidate) -> Json {
    Json::Object(vec![
        ("design", Json::Str(candidate.design.0.into())),
        (
            "node_tax_ns_per_syscall",
            Json::Object(vec![
                ("no_probes", Json::float(candidate.no_hooks)),
                ("hooks_loaded", Json::float(candidate.tax)),
            ]),
        ),
        (
            "steps",
            Json::Array(
                candidate
                    .steps
                    .iter()
                    .map(|s| {
                        Json::Object(vec![
                            ("rate", Json::Int(s.rate)),
                            ("with_hooks", s.traced.json()),
                            ("hook_ns_per_request", Json::float(s.ns_per_request())),
                            (
                                "bare_hook_ns_per_request",
                                Json::float(s.bare_ns_per_request()),
                            ),
                            (
                                "programs",
                                Json::Object(
                                    candidate
                                        .design
                                        .1
                                        .iter()
                                        .zip(&s.hooks.programs)
                                        .map(|(name, (ns, runs))| {
                                            (
                                                *name,
                                                Json::Object(vec![
                                                    ("run_time_ns", Json::Int(*ns)),
                                                    ("runs", Json::Int(*runs)),
                                                ]),
                                            )
                                        })
                                        .collect(),
                                ),
                            ),
                            ("records", Json::Int(s.hooks.records)),
                            ("lost", Json::Int(s.hooks.lost)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}
