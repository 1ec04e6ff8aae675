//! The value that flows through a pipeline: one batch of one signal plus who sent it.

use super::{ClientInfo, Logs, Metrics, Traces};
use std::fmt;

/// The three OTLP signals a pipeline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// Every signal, in pipeline-id order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The name used in `service.pipelines` (`traces`, `metrics`, `logs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// Parses a pipeline-type name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Suffix of the otelcol self-metrics for this signal's items
    /// (`otelcol_receiver_accepted_spans`, `..._metric_points`, `..._log_records`).
    pub fn item_metric_suffix(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch of one signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Spans.
    Traces(Traces),
    /// Metric data points.
    Metrics(Metrics),
    /// Log records.
    Logs(Logs),
}

/// Applies the same expression to whichever batch a [`Payload`] holds.
macro_rules! each_batch {
    ($payload:expr, $batch:ident => $body:expr) => {
        match $payload {
            Payload::Traces($batch) => $body,
            Payload::Metrics($batch) => $body,
            Payload::Logs($batch) => $body,
        }
    };
}

impl Payload {
    /// The signal of this payload.
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// Number of items (spans, data points, log records).
    pub fn item_count(&self) -> usize {
        each_batch!(self, b => b.item_count())
    }

    /// Size of the protobuf encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        each_batch!(self, b => b.encoded_len())
    }

    /// An empty payload of the given signal.
    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Traces => Payload::Traces(Traces::default()),
            Signal::Metrics => Payload::Metrics(Metrics::default()),
            Signal::Logs => Payload::Logs(Logs::default()),
        }
    }

    /// Appends `other` when it is of the same signal; hands it back otherwise.
    pub fn append(&mut self, other: Payload) -> Result<(), Payload> {
        match (self, other) {
            (Payload::Traces(a), Payload::Traces(b)) => a.append(b),
            (Payload::Metrics(a), Payload::Metrics(b)) => a.append(b),
            (Payload::Logs(a), Payload::Logs(b)) => a.append(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Removes and returns the first `max_items` items.
    pub fn split_front(&mut self, max_items: usize) -> Payload {
        match self {
            Payload::Traces(b) => Payload::Traces(b.split_front(max_items)),
            Payload::Metrics(b) => Payload::Metrics(b.split_front(max_items)),
            Payload::Logs(b) => Payload::Logs(b.split_front(max_items)),
        }
    }

    /// The protobuf encoding of the export request.
    pub fn to_protobuf(&self) -> bytes::Bytes {
        each_batch!(self, b => b.to_protobuf())
    }

    /// The protobuf encoding as segments (see [`crate::pdata::Batch::protobuf_segments`]).
    pub fn protobuf_segments(&self) -> Vec<bytes::Bytes> {
        each_batch!(self, b => b.protobuf_segments())
    }
}

/// What flows between components: a payload and the client it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Telemetry {
    /// The data.
    pub payload: Payload,
    /// Who sent it (address, and request metadata when `include_metadata` is on).
    pub client: ClientInfo,
}

impl Telemetry {
    /// Telemetry with no client information.
    pub fn new(payload: Payload) -> Self {
        Self {
            payload,
            client: ClientInfo::default(),
        }
    }

    /// The signal of the payload.
    pub fn signal(&self) -> Signal {
        self.payload.signal()
    }

    /// Number of items in the payload.
    pub fn item_count(&self) -> usize {
        self.payload.item_count()
    }
}

impl From<Traces> for Telemetry {
    fn from(b: Traces) -> Self {
        Telemetry::new(Payload::Traces(b))
    }
}
impl From<Metrics> for Telemetry {
    fn from(b: Metrics) -> Self {
        Telemetry::new(Payload::Metrics(b))
    }
}
impl From<Logs> for Telemetry {
    fn from(b: Logs) -> Self {
        Telemetry::new(Payload::Logs(b))
    }
}
