//! Sampling policies: each looks at a whole buffered trace and returns a
//! [`Decision`].
//!
//! One file per otelcol policy type. Policies see the trace as the decoded
//! `ResourceSpans` it was buffered as; attribute policies look
//! at resource attributes and span attributes, and a trace matches when any
//! resource or span matches.

mod always_sample;
mod and;
mod boolean_attribute;
mod bytes_limiting;
mod composite;
mod drop;
mod latency;
mod not;
mod numeric_attribute;
mod probabilistic;
mod rate_limiting;
mod span_count;
mod status_code;
mod string_attribute;
mod trace_flags;
mod trace_state;

#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

use crate::clock::Timestamp;
use crate::config::{ConfigIssue, PolicyConfig};
use crate::decision::Decision;
use crate::trace_id::TraceId;

pub use probabilistic::{fnv1a_64, probabilistic_threshold};

/// Every policy type this engine accepts, in the order error messages list
/// them.
pub const POLICY_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "trace_state",
    "trace_flags",
    "rate_limiting",
    "bytes_limiting",
    "span_count",
    "boolean_attribute",
    "and",
    "not",
    "drop",
    "composite",
];

/// How deep `and`/`not`/`drop`/`composite` may nest (otelcol allows one
/// level; we allow more, bounded so a config cannot recurse without end).
const MAX_DEPTH: usize = 8;

/// A trace as policies see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TraceView<'a> {
    pub(crate) trace_id: &'a TraceId,
    /// The trace's spans, grouped by resource and scope.
    pub(crate) batches: &'a [ResourceSpans],
    pub(crate) span_count: u64,
    /// OTLP-encoded size of the trace, in bytes.
    pub(crate) size_bytes: u64,
    /// When the decision is being made.
    pub(crate) now: Timestamp,
}

impl<'a> TraceView<'a> {
    /// Every span of the trace.
    pub(crate) fn spans(&self) -> impl Iterator<Item = &'a Span> + 'a {
        self.batches
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter())
    }
}

/// Where an attribute was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Resource,
    Span,
}

/// The value of the first attribute named `key`, as otelcol's map lookup.
pub(crate) fn attribute<'v>(attrs: &'v [KeyValue], key: &str) -> Option<&'v Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The shared logic of the attribute policies: does any resource or span
/// carry `key` with a value `matches` accepts? Without `invert`: sampled if
/// so. With `invert`: inverted-not-sampled if so (a veto), inverted-sampled
/// otherwise, including when no resource or span has the key.
pub(crate) fn attribute_decision(
    trace: &TraceView<'_>,
    key: &str,
    invert: bool,
    mut matches: impl FnMut(&Value, Origin) -> bool,
) -> Decision {
    let mut matches_in = |attrs: &[KeyValue], origin: Origin| {
        attribute(attrs, key).is_some_and(|v| matches(v, origin))
    };
    let mut found = false;
    for rs in trace.batches {
        let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        found = matches_in(attrs, Origin::Resource)
            || rs
                .scope_spans
                .iter()
                .flat_map(|ss| ss.spans.iter())
                .any(|span| matches_in(&span.attributes, Origin::Span));
        if found {
            break;
        }
    }
    match (invert, found) {
        (false, true) => Decision::Sampled,
        (false, false) => Decision::NotSampled,
        (true, true) => Decision::InvertedNotSampled,
        (true, false) => Decision::InvertedSampled,
    }
}

/// A policy ready to evaluate traces. Stateful policies (rate limits, regex
/// caches) update their state on every evaluation.
pub(crate) trait Evaluate: fmt::Debug + Send {
    /// The decision for one trace.
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision;
}

pub(crate) type BoxedPolicy = Box<dyn Evaluate>;

/// Where a policy sits in the config tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// In `policies`.
    Top,
    /// Inside `and`/`not`/`drop`/`composite`, at this depth (1 = directly).
    Nested(usize),
}

impl Level {
    fn child(self) -> Level {
        match self {
            Level::Top => Level::Nested(1),
            Level::Nested(d) => Level::Nested(d + 1),
        }
    }
}

pub(crate) fn issue(path: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        path: path.into(),
        message: message.into(),
    }
}

fn boxed<P: Evaluate + 'static>(
    built: Result<P, Vec<ConfigIssue>>,
) -> Result<BoxedPolicy, Vec<ConfigIssue>> {
    built.map(|p| Box::new(p) as BoxedPolicy)
}

/// Builds the policy `cfg`, found at `path` (e.g. `policies[2]`).
pub(crate) fn build(
    cfg: &PolicyConfig,
    path: &str,
    level: Level,
) -> Result<BoxedPolicy, Vec<ConfigIssue>> {
    if let Level::Nested(depth) = level
        && depth > MAX_DEPTH
    {
        return Err(vec![issue(
            path,
            format!("policies are nested too deeply (at most {MAX_DEPTH} levels)"),
        )]);
    }
    let section = |name: &str| format!("{path}.{name}");
    let t = cfg.policy_type.as_str();
    match t {
        "always_sample" => Ok(Box::new(always_sample::AlwaysSample)),
        "latency" => boxed(latency::Latency::build(
            &cfg.latency.clone().unwrap_or_default(),
            &section(t),
        )),
        "numeric_attribute" => boxed(numeric_attribute::NumericAttribute::build(
            &cfg.numeric_attribute.clone().unwrap_or_default(),
            &section(t),
        )),
        "probabilistic" => boxed(probabilistic::Probabilistic::build(
            &cfg.probabilistic.clone().unwrap_or_default(),
            &section(t),
        )),
        "status_code" => boxed(status_code::StatusCode::build(
            &cfg.status_code.clone().unwrap_or_default(),
            &section(t),
        )),
        "string_attribute" => boxed(string_attribute::StringAttribute::build(
            &cfg.string_attribute.clone().unwrap_or_default(),
            &section(t),
        )),
        "trace_state" => boxed(trace_state::TraceState::build(
            &cfg.trace_state.clone().unwrap_or_default(),
            &section(t),
        )),
        "trace_flags" => Ok(Box::new(trace_flags::TraceFlags)),
        "rate_limiting" => boxed(rate_limiting::RateLimiting::build(
            &cfg.rate_limiting.clone().unwrap_or_default(),
            &section(t),
        )),
        "bytes_limiting" => boxed(bytes_limiting::BytesLimiting::build(
            &cfg.bytes_limiting.clone().unwrap_or_default(),
            &section(t),
        )),
        "span_count" => boxed(span_count::SpanCount::build(
            &cfg.span_count.clone().unwrap_or_default(),
            &section(t),
        )),
        "boolean_attribute" => boxed(boolean_attribute::BooleanAttribute::build(
            &cfg.boolean_attribute.clone().unwrap_or_default(),
            &section(t),
        )),
        "and" => boxed(and::And::build(
            cfg.and.as_ref(),
            &section(t),
            level.child(),
        )),
        "not" => boxed(not::Not::build(
            cfg.not.as_ref(),
            &section(t),
            level.child(),
        )),
        "drop" if level != Level::Top => Err(vec![issue(
            format!("{path}.type"),
            "a drop policy is only allowed at the top level of policies",
        )]),
        "drop" => boxed(drop::Drop::build(
            cfg.drop.as_ref(),
            &section(t),
            level.child(),
        )),
        "composite" => boxed(composite::Composite::build(
            cfg.composite.as_ref(),
            &section(t),
            level.child(),
        )),
        "ottl_condition" => Err(vec![issue(
            format!("{path}.type"),
            "policy type \"ottl_condition\" is not supported (OTTL is not implemented); \
             use string_attribute, numeric_attribute, boolean_attribute, status_code \
             or latency, combined with and/not/drop",
        )]),
        "" => Err(vec![issue(
            format!("{path}.type"),
            format!(
                "missing policy type; expected one of {}",
                POLICY_TYPES.join(", ")
            ),
        )]),
        other => Err(vec![issue(
            format!("{path}.type"),
            format!(
                "unknown policy type {other:?}; expected one of {}",
                POLICY_TYPES.join(", ")
            ),
        )]),
    }
}

/// Builds a list of sub-policies, collecting every problem.
pub(crate) fn build_list(
    configs: &[PolicyConfig],
    path: &str,
    level: Level,
) -> Result<Vec<(String, BoxedPolicy)>, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let mut built = Vec::with_capacity(configs.len());
    for (i, cfg) in configs.iter().enumerate() {
        match build(cfg, &format!("{path}[{i}]"), level) {
            Ok(p) => built.push((cfg.name.clone(), p)),
            Err(mut e) => issues.append(&mut e),
        }
    }
    if issues.is_empty() {
        Ok(built)
    } else {
        Err(issues)
    }
}
