//! The otelcol exporter self-metrics: `otelcol_exporter_sent_*`,
//! `otelcol_exporter_send_failed_*` and `otelcol_exporter_enqueue_failed_*`,
//! each with the item suffix of its signal and the `exporter` label.

use collector_core::observe::{Counter, MetricsRegistry};
use collector_core::pdata::Signal;

#[derive(Clone, Debug)]
struct SignalCounters {
    sent: Counter,
    send_failed: Counter,
    enqueue_failed: Counter,
}

/// Item counters of one exporter, per signal.
#[derive(Clone, Debug)]
pub struct ExporterMetrics {
    by_signal: [SignalCounters; 3],
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

impl ExporterMetrics {
    /// Registers (or finds again, after a reload) the counters of exporter `id`.
    pub fn new(registry: &MetricsRegistry, id: &str) -> Self {
        let labels = [("exporter", id)];
        let make = |signal: Signal| {
            let suffix = signal.item_metric_suffix();
            let what = signal.as_str();
            SignalCounters {
                sent: registry.counter(
                    &format!("otelcol_exporter_sent_{suffix}"),
                    &format!("Number of {what} items successfully sent to destination."),
                    &labels,
                ),
                send_failed: registry.counter(
                    &format!("otelcol_exporter_send_failed_{suffix}"),
                    &format!("Number of {what} items in failed attempts to send to destination."),
                    &labels,
                ),
                enqueue_failed: registry.counter(
                    &format!("otelcol_exporter_enqueue_failed_{suffix}"),
                    &format!("Number of {what} items failed to be added to the sending queue."),
                    &labels,
                ),
            }
        };
        Self {
            by_signal: [
                make(Signal::Traces),
                make(Signal::Metrics),
                make(Signal::Logs),
            ],
        }
    }

    /// Counts items the destination accepted.
    pub fn sent(&self, signal: Signal, items: u64) {
        self.by_signal[index(signal)].sent.add(items);
    }

    /// Counts items that were given up on.
    pub fn send_failed(&self, signal: Signal, items: u64) {
        self.by_signal[index(signal)].send_failed.add(items);
    }

    /// Counts items refused at the sending queue.
    pub fn enqueue_failed(&self, signal: Signal, items: u64) {
        self.by_signal[index(signal)].enqueue_failed.add(items);
    }
}
