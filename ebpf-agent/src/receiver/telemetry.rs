//! The receiver's self-metrics. otelcol names where otelcol has the idea
//! (accepted/refused items), `otelcol_ebpf_*` for what is ours.

use crate::probe::PROGRAMS;
use collector_core::observe::{Counter, Gauge, MetricsRegistry};

/// Self-metric handles of one `ebpf` receiver.
#[derive(Clone, Debug)]
pub(crate) struct Telemetry {
    pub(crate) accepted_spans: Counter,
    pub(crate) refused_spans: Counter,
    pub(crate) accepted_points: Counter,
    pub(crate) refused_points: Counter,
    /// Spans dropped in the agent before the pipeline (queue full).
    pub(crate) dropped_spans_queue_full: Counter,
    /// Kernel-side losses, by reason (mirrors of the probes' counters).
    pub(crate) kernel_ringbuf_full: Counter,
    pub(crate) kernel_conn_table_full: Counter,
    pub(crate) kernel_pending_table_full: Counter,
    pub(crate) kernel_read_failed: Counter,
    /// Records the agent could not decode.
    pub(crate) undecodable_events: Counter,
    pub(crate) events: Counter,
    pub(crate) exchanges: Counter,
    pub(crate) non_http_connections: Counter,
    pub(crate) unparsable_heads: Counter,
    pub(crate) requests_dropped_pending_overflow: Counter,
    pub(crate) connections_evicted: Counter,
    pub(crate) red_series_dropped: Counter,
    pub(crate) processes: Gauge,
    /// The kernel's run statistics of each probe program (with
    /// `bpf_stats_enabled`), in the order of [`PROGRAMS`]: run time in ns
    /// and runs.
    pub(crate) probe_runs: Vec<(Counter, Counter)>,
}

impl Telemetry {
    pub(crate) fn new(registry: &MetricsRegistry, receiver: &str) -> Self {
        let item = |name: &str, help: &str| {
            registry.counter(name, help, &[("receiver", receiver), ("transport", "ebpf")])
        };
        let lost = |reason: &str| {
            registry.counter(
                "otelcol_ebpf_kernel_events_lost",
                "Events the probes could not record, by reason.",
                &[("receiver", receiver), ("reason", reason)],
            )
        };
        let ours = |name: &str, help: &str| registry.counter(name, help, &[("receiver", receiver)]);
        Telemetry {
            accepted_spans: item(
                "otelcol_receiver_accepted_spans",
                "Spans successfully pushed into the pipeline.",
            ),
            refused_spans: item(
                "otelcol_receiver_refused_spans",
                "Spans that could not be pushed into the pipeline.",
            ),
            accepted_points: item(
                "otelcol_receiver_accepted_metric_points",
                "Metric points successfully pushed into the pipeline.",
            ),
            refused_points: item(
                "otelcol_receiver_refused_metric_points",
                "Metric points that could not be pushed into the pipeline.",
            ),
            dropped_spans_queue_full: registry.counter(
                "otelcol_ebpf_spans_dropped",
                "Spans dropped before the pipeline, by reason.",
                &[("receiver", receiver), ("reason", "queue_full")],
            ),
            kernel_ringbuf_full: lost("ringbuf_full"),
            kernel_conn_table_full: lost("conn_table_full"),
            kernel_pending_table_full: lost("pending_table_full"),
            kernel_read_failed: lost("read_failed"),
            undecodable_events: lost("undecodable"),
            events: ours(
                "otelcol_ebpf_events",
                "Events read from the probes' ring buffer.",
            ),
            exchanges: ours(
                "otelcol_ebpf_http_exchanges",
                "HTTP request/response exchanges assembled.",
            ),
            non_http_connections: ours(
                "otelcol_ebpf_non_http_connections",
                "Followed connections whose traffic is not HTTP/1.x (ignored).",
            ),
            unparsable_heads: ours(
                "otelcol_ebpf_unparsable_http_heads",
                "HTTP heads that could not be parsed (too long for the capture, or malformed).",
            ),
            requests_dropped_pending_overflow: ours(
                "otelcol_ebpf_requests_dropped",
                "Requests dropped because a connection had too many unanswered ones.",
            ),
            connections_evicted: ours(
                "otelcol_ebpf_connections_evicted",
                "Connections forgotten because the connection table was full.",
            ),
            red_series_dropped: ours(
                "otelcol_ebpf_red_observations_dropped",
                "Durations not recorded in RED metrics because max_series was reached.",
            ),
            processes: registry.gauge(
                "otelcol_ebpf_instrumented_processes",
                "Processes currently instrumented.",
                &[("receiver", receiver)],
            ),
            probe_runs: PROGRAMS
                .iter()
                .map(|program| {
                    let labels = [("receiver", receiver), ("program", program)];
                    (
                        registry.counter(
                            "otelcol_ebpf_probe_run_time_ns",
                            "Nanoseconds the probes ran in the kernel, by program (0 unless kernel.bpf_stats_enabled=1).",
                            &labels,
                        ),
                        registry.counter(
                            "otelcol_ebpf_probe_runs",
                            "Runs of the probes, by program (0 unless kernel.bpf_stats_enabled=1).",
                            &labels,
                        ),
                    )
                })
                .collect(),
        }
    }
}

/// Adds to `counter` what a monotonic source grew by since `last`.
pub(crate) fn follow(counter: &Counter, last: &mut u64, now: u64) -> u64 {
    let delta = now.saturating_sub(*last);
    if delta > 0 {
        counter.add(delta);
    }
    *last = now.max(*last);
    delta
}
