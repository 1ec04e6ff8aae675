//! The latency the agent adds, measured in pairs: one p99 "without" and
//! one "with" taken minutes apart (the rate steps) differ by ±50 µs from
//! run to run on a small VM whatever the agent does, as much as the target
//! itself. So, with the agent running and selecting the server, a twin
//! server it does not select (the same binary, on a port outside its
//! filter) and the traced server take the same load in alternation,
//! [`PAIRS`] times, the order swapped each round; the figure is the median
//! of the pairs' differences. Both servers run beside the agent's
//! processing of the traced one's events, which is what a traced request
//! waits behind; the twin pays the node tax, a few tens of ns per syscall.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::Result;

use super::{Load, TARGET_ADDED_P99_US, load, start_server};
use crate::bench::Bench;
use crate::bench::probe::free_address;
use crate::bench::report::{Json, verdict};

/// Request rate of the pairs, per second (the target's).
pub(crate) const RATE: u64 = 5_000;
/// Pairs run.
const PAIRS: usize = 3;

/// One round: the untraced twin and the traced server under the same load.
#[derive(Clone, Debug)]
pub(crate) struct Pair {
    untraced: Load,
    traced: Load,
}

impl Pair {
    /// p99 of the traced server minus the twin's, µs (negative when the
    /// twin's was the slower).
    fn added_us(&self) -> i64 {
        self.traced.p99_us as i64 - self.untraced.p99_us as i64
    }
}

/// The pairs of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Latency {
    pairs: Vec<Pair>,
}

impl Latency {
    /// The median of the pairs' differences, µs.
    pub(crate) fn median_added_us(&self) -> Option<i64> {
        let mut added: Vec<i64> = self.pairs.iter().map(Pair::added_us).collect();
        added.sort_unstable();
        added.get(added.len() / 2).copied()
    }
}

/// Runs the pairs against `traced` (selected by the running agent) and a
/// twin server started here.
pub(crate) fn measure(bench: &Bench<'_>, traced: SocketAddr) -> Result<Latency> {
    let twin_address = free_address()?;
    let _twin = start_server(bench, twin_address, "ebpf-http-twin")?;
    let mut pairs = Vec::with_capacity(PAIRS);
    for round in 0..PAIRS {
        eprintln!(
            "bench: ebpf: latency pair {} of {PAIRS} at {RATE} requests/s",
            round + 1
        );
        let run = |address: SocketAddr, which: &str| {
            load(
                bench,
                &format!("ebpf-latency-{round}-{which}"),
                address,
                RATE,
            )
        };
        let pair = if round % 2 == 0 {
            let untraced = run(twin_address, "untraced")?;
            let traced = run(traced, "traced")?;
            Pair { untraced, traced }
        } else {
            let traced = run(traced, "traced")?;
            let untraced = run(twin_address, "untraced")?;
            Pair { untraced, traced }
        };
        pairs.push(pair);
    }
    Ok(Latency { pairs })
}

/// The verdict line, with each pair.
pub(crate) fn table(latency: &Latency) -> String {
    let mut out = String::new();
    let pairs: Vec<String> = latency
        .pairs
        .iter()
        .map(|p| {
            format!(
                "{} / {} µs ({:+})",
                p.untraced.p99_us,
                p.traced.p99_us,
                p.added_us()
            )
        })
        .collect();
    match latency.median_added_us() {
        Some(added) => {
            let _ = writeln!(
                out,
                "p99 latency added at {RATE}/s, median of {} pairs (untraced twin / traced server, the agent running): {added} µs (target under {TARGET_ADDED_P99_US}): {}; pairs: {}",
                latency.pairs.len(),
                verdict(added < TARGET_ADDED_P99_US as i64),
                pairs.join(", ")
            );
        }
        None => {
            let _ = writeln!(out, "p99 latency added at {RATE}/s: no pairs measured");
        }
    }
    out
}

pub(crate) fn json(latency: &Latency) -> Json {
    Json::Object(vec![
        ("rate", Json::Int(RATE)),
        (
            "pairs",
            Json::Array(
                latency
                    .pairs
                    .iter()
                    .map(|p| {
                        Json::Object(vec![
                            ("untraced", p.untraced.json()),
                            ("traced", p.traced.json()),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "p99_added_us_median",
            latency
                .median_added_us()
                .map_or(Json::Null, |added| Json::float(added as f64)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(untraced: u64, traced: u64) -> Pair {
        let load = |p99_us| Load {
            p99_us,
            ..Load::default()
        };
        Pair {
            untraced: load(untraced),
            traced: load(traced),
        }
    }

    #[test]
    fn the_median_difference_ignores_one_outlier_pair() {
        let latency = Latency {
            pairs: vec![pair(300, 320), pair(280, 420), pair(350, 340)],
        };
        assert_eq!(latency.median_added_us(), Some(20));
        assert_eq!(Latency::default().median_added_us(), None);
    }
}
