//! A tail-sampling engine that makes the decisions otelcol-contrib's
//! `tail_sampling` processor makes, from the same YAML, with bounded memory.
//!
//! Data path: `ResourceSpans` -> [`Sampler::ingest`] (grouped by trace ID,
//! stored encoded) -> [`Sampler::tick`] (due traces decoded and evaluated
//! against the policies) -> [`DecidedTrace`]s, the sampled ones carrying
//! their spans regrouped by resource and scope.
//!
//! The engine has no clock and no threads: time is passed in as a
//! [`Timestamp`], so tests control it and a runtime uses a
//! [`MonotonicClock`]. It pulls in neither tokio nor the collector runtime.
//!
//! ```
//! use std::time::Duration;
//! use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
//! use opentelemetry_proto::tonic::resource::v1::Resource;
//! use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, ResourceSpans, ScopeSpans, Span, Status};
//! use sampling::{Sampler, Timestamp};
//!
//! let mut sampler = Sampler::from_yaml(r#"
//!     decision_wait: 10s
//!     policies:
//!       - name: errors
//!         type: status_code
//!         status_code: {status_codes: [ERROR]}
//! "#).unwrap();
//!
//! let span = |trace: u8, code: StatusCode| Span {
//!     trace_id: vec![trace; 16],
//!     span_id: vec![1; 8],
//!     status: Some(Status { code: code as i32, ..Default::default() }),
//!     ..Default::default()
//! };
//! let batch = vec![ResourceSpans {
//!     resource: Some(Resource {
//!         attributes: vec![KeyValue {
//!             key: "service.name".into(),
//!             value: Some(AnyValue { value: Some(Value::StringValue("checkout".into())) }),
//!             ..Default::default()
//!         }],
//!         ..Default::default()
//!     }),
//!     scope_spans: vec![ScopeSpans {
//!         spans: vec![span(1, StatusCode::Error), span(2, StatusCode::Ok)],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! }];
//!
//! let t0 = Timestamp::ZERO;
//! let outcome = sampler.ingest(batch, t0);
//! assert_eq!(outcome.buffered_spans, 2);
//! assert!(sampler.tick(t0 + Duration::from_secs(9)).is_empty()); // not due yet
//!
//! let decided = sampler.tick(t0 + Duration::from_secs(10));
//! assert_eq!(decided.len(), 2);
//! assert!(decided[0].sampled && &*decided[0].policies[0] == "errors");
//! assert_eq!(decided[0].resource_spans[0].scope_spans[0].spans.len(), 1);
//! assert!(!decided[1].sampled && decided[1].resource_spans.is_empty());
//! assert_eq!(sampler.stats().global.sampled, 1);
//! ```
//!
//! Deliberate differences from otelcol are listed in [`config`] and in the
//! crate's README.

#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cache;
mod clock;
pub mod config;
mod decision;
mod encoded;
mod engine;
pub mod policy;
#[cfg(feature = "collector")]
pub mod processor;
mod stats;
mod trace_buffer;
mod trace_id;

pub use clock::{MonotonicClock, Timestamp};
pub use config::{
    AndConfig, BooleanAttributeConfig, BytesLimitingConfig, CompositeConfig, ConfigError,
    ConfigIssue, DecisionCacheConfig, DropConfig, LatencyConfig, NotConfig, NumericAttributeConfig,
    PolicyConfig, ProbabilisticConfig, RateAllocationConfig, RateLimitingConfig, SamplerConfig,
    SpanCountConfig, StatusCodeConfig, StringAttributeConfig, TraceStateConfig,
};
pub use decision::{Decision, FinalDecision};
pub use encoded::{Block, EncodedSpan, EncodedSpans};
pub use engine::{
    CACHED_DECISION_ATTRIBUTE, DecidedTrace, DecisionTrigger, IngestOutcome, POLICY_ATTRIBUTE,
    Sampler,
};
pub use stats::{
    DECISION_LATENESS_BOUNDS_MS, DecisionCounts, Histogram, LATE_SPAN_AGE_BOUNDS_SECS,
    LateSpanCounts, PolicyStats, SamplerStats, TriggerCounts,
};
pub use trace_id::TraceId;
