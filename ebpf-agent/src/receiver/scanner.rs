//! Keeps the probes' process selection in step with /proc: selects new
//! listeners on the configured ports, retires processes that exited or
//! stopped listening, and mirrors the probes' loss counters.

use super::telemetry::{Telemetry, follow};
use crate::probe::{Counters, Probe};
use crate::process::ProcessInfo;
use crate::process::scan::{Selection, Selector, scan};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Scans between two sweeps of the kernel's in-flight syscall table.
const SWEEP_EVERY_SCANS: u64 = 60;

/// What the scanner shares with the events loop.
pub(crate) struct Scanner {
    pub(crate) selector: Selector,
    pub(crate) probe: Arc<Mutex<Probe>>,
    /// The current selection, read by the events loop.
    pub(crate) selection: Arc<RwLock<Selection>>,
    /// Processes no longer selected, for the events loop to finish.
    pub(crate) retired: mpsc::UnboundedSender<Arc<ProcessInfo>>,
    pub(crate) telemetry: Telemetry,
    pub(crate) interval: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Scanner {
    /// Applies a new scan: selects and deselects in the kernel, publishes
    /// the selection, sends retired processes to the events loop.
    pub(crate) fn apply(&self, next: Selection) {
        let previous = self
            .selection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        {
            let mut probe = lock(&self.probe);
            for (pid, process) in &next {
                let same = previous
                    .get(pid)
                    .is_some_and(|old| old.start_ticks == process.start_ticks);
                if same {
                    continue;
                }
                if let Some(old) = previous.get(pid) {
                    // The pid was reused by a new process.
                    let _ = self.retired.send(Arc::clone(old));
                }
                match probe.select(*pid) {
                    Ok(()) => tracing::info!(
                        pid,
                        executable = %process.exe_path,
                        ports = ?process.listeners.values().map(|a| a.port()).collect::<Vec<_>>(),
                        "instrumenting process"
                    ),
                    Err(e) => tracing::warn!(pid, error = %e, "could not instrument process"),
                }
            }
            for (pid, old) in &previous {
                if !next.contains_key(pid) {
                    probe.deselect(*pid);
                    tracing::info!(pid, executable = %old.exe_path, "no longer instrumenting process");
                    let _ = self.retired.send(Arc::clone(old));
                }
            }
        }
        self.telemetry.processes.set(next.len() as i64);
        *self.selection.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// One scan of /proc, off the async threads.
    pub(crate) async fn scan_once(&self) -> Selection {
        let selector = self.selector.clone();
        let previous = self
            .selection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio::task::spawn_blocking(move || scan(&selector, &previous))
            .await
            .unwrap_or_default()
    }

    /// Rescans every interval until `stop` turns true.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last = Counters::default();
        let mut last_stats = vec![(0, 0); self.telemetry.probe_runs.len()];
        let mut scans: u64 = 0;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            let next = self.scan_once().await;
            self.apply(next);
            let now = lock(&self.probe).counters();
            self.mirror_counters(&mut last, now);
            self.mirror_run_stats(&mut last_stats);
            scans += 1;
            if scans.is_multiple_of(SWEEP_EVERY_SCANS) {
                let swept = lock(&self.probe).sweep_pending();
                if swept > 0 {
                    tracing::debug!(swept, "removed in-flight syscall entries of exited threads");
                }
            }
        }
        let now = lock(&self.probe).counters();
        self.mirror_counters(&mut last, now);
    }

    fn mirror_run_stats(&self, last: &mut [(u64, u64)]) {
        let stats = lock(&self.probe).run_stats();
        for (((time, runs), (time_counter, runs_counter)), last) in
            stats.into_iter().zip(&self.telemetry.probe_runs).zip(last)
        {
            follow(time_counter, &mut last.0, time);
            follow(runs_counter, &mut last.1, runs);
        }
    }

    fn mirror_counters(&self, last: &mut Counters, now: Counters) {
        let t = &self.telemetry;
        let lost = follow(
            &t.kernel_ringbuf_full,
            &mut last.ringbuf_full,
            now.ringbuf_full,
        );
        if lost > 0 {
            tracing::warn!(
                lost,
                "the probes' ring buffer was full: events lost (raise ring_buffer_size_mib)"
            );
        }
        let conns = follow(
            &t.kernel_conn_table_full,
            &mut last.conn_table_full,
            now.conn_table_full,
        );
        let pending = follow(
            &t.kernel_pending_table_full,
            &mut last.pending_table_full,
            now.pending_table_full,
        );
        if conns + pending > 0 {
            tracing::warn!(
                conns,
                syscalls = pending,
                "the probes' tables were full: not followed"
            );
        }
        follow(
            &t.kernel_read_failed,
            &mut last.read_failed,
            now.read_failed,
        );
    }
}
