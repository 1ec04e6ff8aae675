//! The counting sink every contender sends to (`otel-sink`), and reading it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use super::children::{ChildGuard, pause};
use super::probe::{SinkCounts, free_address, sink_counts};
use super::{DRAIN_LIMIT, DRAIN_QUIET, Layout, START_TIMEOUT, with_fresh_ports};

/// The counting sink, shared by every contender.
pub(crate) struct Sink {
    pub(crate) guard: ChildGuard,
    /// Where it takes OTLP/gRPC.
    pub(crate) grpc: SocketAddr,
    stats: SocketAddr,
}

impl Sink {
    pub(crate) fn start(layout: &Layout) -> Result<Sink> {
        Self::start_named(layout, "sink")
    }

    /// Starts a sink whose output goes to the log `name`.
    pub(crate) fn start_named(layout: &Layout, name: &str) -> Result<Sink> {
        with_fresh_ports("otel-sink", || {
            let (grpc, stats) = (free_address()?, free_address()?);
            let mut command = Command::new(&layout.sink);
            command
                .arg("--listen")
                .arg(grpc.to_string())
                .arg("--stats")
                .arg(stats.to_string())
                .arg("--exit-with-parent");
            let mut guard = ChildGuard::spawn("otel-sink", &mut command, &layout.log(name))?;
            guard.wait_listening(stats, START_TIMEOUT)?;
            guard.wait_listening(grpc, START_TIMEOUT)?;
            sink_counts(stats)?;
            Ok(Sink { guard, grpc, stats })
        })
    }

    pub(crate) fn counts(&mut self) -> Result<SinkCounts> {
        self.guard.check_running()?;
        sink_counts(self.stats).with_context(|| {
            format!(
                "the sink stopped answering (see {})",
                self.guard.log().display()
            )
        })
    }

    /// Polls until `expected` spans more than `base` arrived; false when the
    /// count stopped moving for [`DRAIN_QUIET`] (or [`DRAIN_LIMIT`] passed) first.
    pub(crate) fn drain(&mut self, base: &SinkCounts, expected: u64) -> Result<(SinkCounts, bool)> {
        let (mut counts, drained) = drain_all(
            std::slice::from_mut(self),
            std::slice::from_ref(base),
            expected,
        )?;
        Ok((counts.pop().unwrap_or_default(), drained))
    }
}

/// The counts of each of `sinks`.
pub(crate) fn counts_of(sinks: &mut [Sink]) -> Result<Vec<SinkCounts>> {
    sinks.iter_mut().map(Sink::counts).collect()
}

/// What arrived at all of `sinks` together since `base` (one entry per sink).
pub(crate) fn total_since(now: &[SinkCounts], base: &[SinkCounts]) -> SinkCounts {
    now.iter()
        .zip(base)
        .map(|(n, b)| n.since(b))
        .fold(SinkCounts::default(), |sum, c| sum.plus(&c))
}

/// Polls until `expected` spans more than `base` arrived at `sinks`
/// together; false when the counts stopped moving for [`DRAIN_QUIET`] (or
/// [`DRAIN_LIMIT`] passed) first. Returns each sink's counts.
pub(crate) fn drain_all(
    sinks: &mut [Sink],
    base: &[SinkCounts],
    expected: u64,
) -> Result<(Vec<SinkCounts>, bool)> {
    let started = Instant::now();
    let mut last = counts_of(sinks)?;
    let mut last_change = started;
    loop {
        if total_since(&last, base).spans >= expected {
            return Ok((last, true));
        }
        if last_change.elapsed() >= DRAIN_QUIET || started.elapsed() >= DRAIN_LIMIT {
            return Ok((last, false));
        }
        pause()?;
        let now = counts_of(sinks)?;
        if now != last {
            last_change = Instant::now();
        }
        last = now;
    }
}
