//! Removal of items whose IDs are invalid, reported to the sender as
//! `partial_success` instead of failing the whole request.

use super::{Logs, Payload, Traces};

/// Items removed from a request, with the reason the sender is told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    /// How many items were removed.
    pub items: usize,
    /// Why, for `partial_success.error_message`.
    pub message: String,
}

impl Rejected {
    /// Both reports in one (counts added, messages joined).
    pub fn merge(a: Option<Rejected>, b: Option<Rejected>) -> Option<Rejected> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Rejected {
                items: a.items + b.items,
                message: format!("{}; {}", a.message, b.message),
            }),
            (a, b) => a.or(b),
        }
    }
}

fn valid_trace_id(id: &[u8]) -> bool {
    id.len() == 16 && id.iter().any(|b| *b != 0)
}

fn valid_span_id(id: &[u8]) -> bool {
    id.len() == 8 && id.iter().any(|b| *b != 0)
}

/// Parent span IDs may be empty (a root span); otherwise 8 non-zero bytes.
fn valid_parent_id(id: &[u8]) -> bool {
    id.is_empty() || valid_span_id(id)
}

/// Log records may carry no trace context; when they do it must be valid.
fn valid_log_context(trace_id: &[u8], span_id: &[u8]) -> bool {
    (trace_id.is_empty() || valid_trace_id(trace_id))
        && (span_id.is_empty() || valid_span_id(span_id))
}

fn remove_invalid_spans(traces: &mut Traces) -> usize {
    if traces.ids_known_valid() {
        return 0;
    }
    let invalid = traces
        .resources()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|s| {
            !(valid_trace_id(&s.trace_id)
                && valid_span_id(&s.span_id)
                && valid_parent_id(&s.parent_span_id))
        })
        .count();
    if invalid > 0 {
        traces.modify(|resources| {
            for scope in resources.iter_mut().flat_map(|r| &mut r.scope_spans) {
                scope.spans.retain(|s| {
                    valid_trace_id(&s.trace_id)
                        && valid_span_id(&s.span_id)
                        && valid_parent_id(&s.parent_span_id)
                });
            }
        });
    }
    invalid
}

fn remove_invalid_logs(logs: &mut Logs) -> usize {
    if logs.ids_known_valid() {
        return 0;
    }
    let invalid = logs
        .resources()
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .filter(|l| !valid_log_context(&l.trace_id, &l.span_id))
        .count();
    if invalid > 0 {
        logs.modify(|resources| {
            for scope in resources.iter_mut().flat_map(|r| &mut r.scope_logs) {
                scope
                    .log_records
                    .retain(|l| valid_log_context(&l.trace_id, &l.span_id));
            }
        });
    }
    invalid
}

impl Payload {
    /// Removes spans and log records whose trace or span IDs are malformed
    /// (wrong length or all zero) and says how many went. The valid rest keeps
    /// flowing; the receiver reports the removed ones as `partial_success`.
    pub fn remove_invalid_ids(&mut self) -> Option<Rejected> {
        let (items, what) = match self {
            Payload::Traces(t) => (remove_invalid_spans(t), "spans"),
            Payload::Logs(l) => (remove_invalid_logs(l), "log records"),
            Payload::Metrics(_) => (0, ""),
        };
        (items > 0).then(|| Rejected {
            items,
            message: format!(
                "{items} {what} rejected: trace ID must be 16 bytes and span ID 8 bytes, not all zero"
            ),
        })
    }
}
