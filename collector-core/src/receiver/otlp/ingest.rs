//! What both transports do with a decoded request: drop items with invalid
//! IDs (reported as partial success), hand the rest to the pipelines, count
//! the outcome with otelcol's receiver metrics.

use super::limits::Cuts;
use crate::component::{Host, ReceiverConsumers};
use crate::consumer::ConsumeError;
use crate::observe::{Counter, RateLimitedLog};
use crate::pdata::{ClientInfo, Payload, Rejected, Signal, Telemetry};
use std::collections::HashMap;

/// Which transport a request came over (the `transport` metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Grpc,
    Http,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Counters for one (signal, transport).
#[derive(Debug)]
struct ItemCounters {
    accepted: Counter,
    refused: Counter,
    /// Items refused by the receiver's own limits, by reason.
    refused_by_reason: HashMap<&'static str, Counter>,
}

/// The receiver's shared request handling.
#[derive(Debug)]
pub(crate) struct Ingest {
    consumers: ReceiverConsumers,
    counters: HashMap<(Signal, Transport), ItemCounters>,
    /// Requests refused before any item could be counted (undecodable, too
    /// large, wrong content type, ...), by transport and reason.
    bad_requests: HashMap<(Transport, &'static str), Counter>,
    /// Parts of kept items cut by the per-request limits (HTTP only).
    truncated: HashMap<&'static str, Counter>,
    log: RateLimitedLog,
    id: String,
}

/// Reasons the receiver itself refuses decoded items (the `reason` label of
/// `otelcol_receiver_refused_<items>`; refusals from the pipeline carry none).
pub(crate) const ITEM_REFUSAL_REASONS: [&str; 3] =
    ["rate_limited", "too_many_items", "timestamp_skew"];

/// What `protocols.http.limits` cuts from items it keeps (the `part` label of
/// `otelcol_receiver_truncated`).
const TRUNCATED_PARTS: [&str; 4] = ["attributes", "attribute_values", "events", "links"];

/// Reasons a request is refused before decoding, as metric labels.
pub(crate) const BAD_REQUEST_REASONS: [&str; 10] = [
    "rate_limited",
    "origin",
    "overloaded",
    "decode",
    "too_large",
    "content_type",
    "method",
    "encoding",
    "not_found",
    "no_pipeline",
];

impl Ingest {
    pub(crate) fn new(id: &str, host: &Host, consumers: ReceiverConsumers) -> Self {
        let mut counters = HashMap::new();
        let mut bad_requests = HashMap::new();
        for transport in [Transport::Grpc, Transport::Http] {
            let t = transport.as_str();
            for signal in Signal::ALL {
                let suffix = signal.item_metric_suffix();
                let labels = [("receiver", id), ("transport", t)];
                let refused_name = format!("otelcol_receiver_refused_{suffix}");
                let refused_by_reason = ITEM_REFUSAL_REASONS
                    .iter()
                    .map(|reason| {
                        let counter = host.metrics.counter(
                            &refused_name,
                            "Items that could not be pushed into the pipeline.",
                            &[("receiver", id), ("transport", t), ("reason", reason)],
                        );
                        (*reason, counter)
                    })
                    .collect();
                counters.insert(
                    (signal, transport),
                    ItemCounters {
                        accepted: host.metrics.counter(
                            &format!("otelcol_receiver_accepted_{suffix}"),
                            "Items successfully pushed into the pipeline.",
                            &labels,
                        ),
                        refused: host.metrics.counter(
                            &format!("otelcol_receiver_refused_{suffix}"),
                            "Items that could not be pushed into the pipeline.",
                            &labels,
                        ),
                        refused_by_reason,
                    },
                );
            }
            for reason in BAD_REQUEST_REASONS {
                bad_requests.insert(
                    (transport, reason),
                    host.metrics.counter(
                        "otelcol_receiver_refused_requests",
                        "Requests refused before their items could be read (ollyscale-otel).",
                        &[("receiver", id), ("transport", t), ("reason", reason)],
                    ),
                );
            }
        }
        let truncated = TRUNCATED_PARTS
            .iter()
            .map(|part| {
                let counter = host.metrics.counter(
                    "otelcol_receiver_truncated",
                    "Attributes, attribute values, span events and links cut by the receiver's per-request limits (ollyscale-otel).",
                    &[("receiver", id), ("transport", "http"), ("part", part)],
                );
                (*part, counter)
            })
            .collect();
        Self {
            consumers,
            counters,
            bad_requests,
            truncated,
            log: RateLimitedLog::default(),
            id: id.to_string(),
        }
    }

    /// Whether any pipeline takes this signal from this receiver.
    pub(crate) fn accepts(&self, signal: Signal) -> bool {
        self.consumers.get(signal).is_some()
    }

    /// Counts and logs (rate-limited) a request refused before decoding.
    pub(crate) fn refuse_request(&self, transport: Transport, reason: &'static str, detail: &str) {
        if let Some(counter) = self.bad_requests.get(&(transport, reason)) {
            counter.inc();
        }
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(receiver = %self.id, transport = transport.as_str(), reason, suppressed, "refused request: {detail}");
        }
    }

    /// Counts and logs (rate-limited) decoded items the receiver refused itself.
    pub(crate) fn refuse_items(
        &self,
        transport: Transport,
        signal: Signal,
        reason: &'static str,
        items: usize,
        detail: &str,
    ) {
        if let Some(counter) = self.counters[&(signal, transport)]
            .refused_by_reason
            .get(reason)
        {
            counter.add(items as u64);
        }
        if let Some(suppressed) = self.log.check() {
            tracing::warn!(receiver = %self.id, transport = transport.as_str(), reason, items, suppressed, "refused {signal}: {detail}");
        }
    }

    /// Counts (and logs, rate-limited) what the per-request limits cut from
    /// an HTTP request; `refused` says why its refused items were refused.
    pub(crate) fn count_cuts(&self, signal: Signal, cuts: &Cuts, refused: Option<&Rejected>) {
        let parts = [
            ("attributes", cuts.attributes),
            ("attribute_values", cuts.values),
            ("events", cuts.events),
            ("links", cuts.links),
        ];
        for (part, n) in parts {
            if n > 0
                && let Some(counter) = self.truncated.get(part)
            {
                counter.add(n);
            }
        }
        for (reason, items) in [
            ("too_many_items", cuts.refused_over_count),
            ("timestamp_skew", cuts.refused_skewed),
        ] {
            if items > 0 {
                let detail = refused.map_or("", |r| r.message.as_str());
                self.refuse_items(Transport::Http, signal, reason, items, detail);
            }
        }
    }

    /// Pushes a decoded payload into the pipelines. `prior` are the items the
    /// receiver already refused (per-request limits). On success returns
    /// those and the items dropped for invalid IDs (for `partial_success`).
    pub(crate) async fn export(
        &self,
        transport: Transport,
        mut payload: Payload,
        client: ClientInfo,
        prior: Option<Rejected>,
    ) -> Result<Option<Rejected>, ConsumeError> {
        let signal = payload.signal();
        let counters = &self.counters[&(signal, transport)];
        let Some(consumer) = self.consumers.get(signal) else {
            self.refuse_request(transport, "no_pipeline", signal.as_str());
            return Err(ConsumeError::new(
                crate::consumer::ErrorKind::InvalidArgument,
                format!("no {signal} pipeline uses this receiver"),
            ));
        };
        let invalid = payload.remove_invalid_ids();
        if let Some(invalid) = &invalid {
            counters.refused.add(invalid.items as u64);
            if let Some(suppressed) = self.log.check() {
                tracing::warn!(receiver = %self.id, transport = transport.as_str(), suppressed, "{}", invalid.message);
            }
        }
        let rejected = Rejected::merge(prior, invalid);
        let items = payload.item_count() as u64;
        if items == 0 && rejected.is_some() {
            return Ok(rejected);
        }
        match consumer.consume(Telemetry { payload, client }).await {
            Ok(()) => {
                counters.accepted.add(items);
                Ok(rejected)
            }
            Err(e) => {
                counters.refused.add(items);
                if let Some(suppressed) = self.log.check() {
                    tracing::warn!(receiver = %self.id, transport = transport.as_str(), items, suppressed, error = %e, "pipeline refused data");
                }
                Err(e)
            }
        }
    }
}
