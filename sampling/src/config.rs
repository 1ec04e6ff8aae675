//! The `tail_sampling` configuration, exactly as otelcol-contrib reads it.
//!
//! [`SamplerConfig`] is the processor's YAML section. Every key otelcol knows
//! for the policies listed in `otelcol-compat.md` is accepted; unknown keys are
//! rejected with their YAML path. Semantic checks (regexes compile, status
//! codes exist, policy types are known, ...) run when a
//! [`Sampler`](crate::Sampler) is built, or through [`SamplerConfig::validate`],
//! and report paths relative to the processor section, for example
//! `policies[1].string_attribute.values[0]: invalid regex: ...`.
//!
//! Deliberate differences from otelcol:
//! - `decision_cache` sizes default to `num_traces` each instead of 0 (off);
//!   an explicit `0` still turns a cache off.
//! - `max_memory_mib` (ours) caps the bytes of buffered spans; default 512.
//! - When `num_traces` (or `max_memory_mib`) is reached, the oldest trace is
//!   *decided* early, not dropped undecided.
//! - A trace over `maximum_trace_size_bytes` is decided at once by the
//!   policies (otelcol marks it not sampled), so a huge error trace is kept.
//! - `ottl_condition` policies are rejected as not supported, and so are
//!   `block_on_overflow: true` and `sampling_strategy: span-ingest`.
//! - Settings that can never sample are rejected rather than accepted
//!   silently: an empty attribute `key`, `numeric_attribute` without bounds,
//!   inverted ranges, an empty `and`/`drop`/`composite`, unknown names in
//!   `policy_order`/`rate_allocation`, no policies at all.
//! - `and`, `not` and `composite` may nest (up to 8 levels); `drop` is only
//!   allowed at the top level.

mod de;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

pub use de::{DurationError, parse_go_duration};

/// Default `decision_wait`: 30 seconds.
pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(30);
/// Default `num_traces`: 50,000.
pub const DEFAULT_NUM_TRACES: u64 = 50_000;
/// Default `max_memory_mib` (ours): 512 MiB of buffered spans.
pub const DEFAULT_MAX_MEMORY_MIB: u64 = 512;

/// The `tail_sampling` processor section.
///
/// Build one from YAML with [`SamplerConfig::from_yaml`] or from any serde
/// deserializer with [`SamplerConfig::from_deserializer`].
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Wait from a trace's first span to its decision (`decision_wait`,
    /// default 30s).
    #[serde(deserialize_with = "de::duration")]
    pub decision_wait: Duration,
    /// Wait from the arrival of a trace's root span to its decision, when that
    /// comes before `decision_wait` (`decision_wait_after_root_received`;
    /// 0 = off, the default).
    #[serde(deserialize_with = "de::duration")]
    pub decision_wait_after_root_received: Duration,
    /// Most traces buffered at once (`num_traces`, default 50,000). When full,
    /// the oldest trace is decided early.
    #[serde(deserialize_with = "de::u64_field")]
    pub num_traces: u64,
    /// Expected new traces per second, used to pre-size the buffer
    /// (`expected_new_traces_per_sec`, default 0).
    #[serde(deserialize_with = "de::u64_field")]
    pub expected_new_traces_per_sec: u64,
    /// Sizes of the caches of decided trace IDs (`decision_cache`).
    pub decision_cache: DecisionCacheConfig,
    /// Stop evaluating policies at the first one that samples
    /// (`sample_on_first_match`, default false).
    pub sample_on_first_match: bool,
    /// On shutdown, discard undecided traces instead of deciding them
    /// (`drop_pending_traces_on_shutdown`, default false).
    pub drop_pending_traces_on_shutdown: bool,
    /// A trace whose OTLP size exceeds this many bytes is decided at once,
    /// by the policies, on the spans received so far; its later spans follow
    /// that decision (`maximum_trace_size_bytes`; 0 = no limit, the default).
    /// otelcol instead marks such a trace not sampled.
    #[serde(deserialize_with = "de::u64_field")]
    pub maximum_trace_size_bytes: u64,
    /// otelcol's `block_on_overflow`. Only `false` is supported: this engine
    /// never blocks, it decides the oldest trace early instead.
    pub block_on_overflow: bool,
    /// otelcol's `sampling_strategy`. Only `trace-complete` (otelcol's
    /// default) is supported.
    pub sampling_strategy: Option<String>,
    /// Ours: the most memory, in MiB, that buffered spans may take (default
    /// 512; 0 = no limit). Beyond it the oldest traces are decided early.
    #[serde(deserialize_with = "de::u64_field")]
    pub max_memory_mib: u64,
    /// The policies; a trace is sampled when the combination of their
    /// decisions says so (see [`Decision`](crate::Decision)).
    pub policies: Vec<PolicyConfig>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            decision_wait: DEFAULT_DECISION_WAIT,
            decision_wait_after_root_received: Duration::ZERO,
            num_traces: DEFAULT_NUM_TRACES,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCacheConfig::default(),
            sample_on_first_match: false,
            drop_pending_traces_on_shutdown: false,
            maximum_trace_size_bytes: 0,
            block_on_overflow: false,
            sampling_strategy: None,
            max_memory_mib: DEFAULT_MAX_MEMORY_MIB,
            policies: Vec::new(),
        }
    }
}

/// `decision_cache`: how many decided trace IDs to remember, so that spans
/// arriving after the decision follow it.
///
/// Ours: a size left out defaults to `num_traces` (otelcol: 0, off). An
/// explicit 0 turns that cache off.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Trace IDs remembered as sampled (`sampled_cache_size`).
    #[serde(deserialize_with = "de::opt_u64_field")]
    pub sampled_cache_size: Option<u64>,
    /// Trace IDs remembered as not sampled (`non_sampled_cache_size`).
    #[serde(deserialize_with = "de::opt_u64_field")]
    pub non_sampled_cache_size: Option<u64>,
}

/// One policy: `{name, type, <type>: {...}}`.
///
/// The same shape is used at the top level and inside `and`, `not`, `drop`
/// and `composite`. Sections for other types than `type` are accepted and
/// ignored, as otelcol does; a missing section means that type's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's name, used in metrics and `tailsampling.policy`.
    /// Required and unique at the top level.
    pub name: String,
    /// The policy type (`always_sample`, `latency`, ...).
    #[serde(rename = "type")]
    pub policy_type: String,
    /// `latency` settings.
    pub latency: Option<LatencyConfig>,
    /// `numeric_attribute` settings.
    pub numeric_attribute: Option<NumericAttributeConfig>,
    /// `probabilistic` settings.
    pub probabilistic: Option<ProbabilisticConfig>,
    /// `status_code` settings.
    pub status_code: Option<StatusCodeConfig>,
    /// `string_attribute` settings.
    pub string_attribute: Option<StringAttributeConfig>,
    /// `trace_state` settings.
    pub trace_state: Option<TraceStateConfig>,
    /// `rate_limiting` settings.
    pub rate_limiting: Option<RateLimitingConfig>,
    /// `bytes_limiting` settings.
    pub bytes_limiting: Option<BytesLimitingConfig>,
    /// `span_count` settings.
    pub span_count: Option<SpanCountConfig>,
    /// `boolean_attribute` settings.
    pub boolean_attribute: Option<BooleanAttributeConfig>,
    /// `ottl_condition` settings: parsed only to be rejected with a clear
    /// "not supported" error.
    pub ottl_condition: Option<IgnoredAny>,
    /// `and` settings.
    pub and: Option<AndConfig>,
    /// `not` settings.
    pub not: Option<NotConfig>,
    /// `drop` settings.
    pub drop: Option<DropConfig>,
    /// `composite` settings.
    pub composite: Option<CompositeConfig>,
}

/// `latency`: trace duration (latest span end minus earliest span start).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// Lower bound in milliseconds: inclusive without an upper bound,
    /// exclusive with one.
    #[serde(deserialize_with = "de::i64_field")]
    pub threshold_ms: i64,
    /// Inclusive upper bound in milliseconds; 0 = none.
    #[serde(deserialize_with = "de::i64_field")]
    pub upper_threshold_ms: i64,
}

/// `numeric_attribute`: an int (or double) attribute within `[min, max]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// Attribute key, looked up on resources and spans.
    pub key: String,
    /// Inclusive minimum; 0 = no minimum (as in otelcol).
    #[serde(deserialize_with = "de::i64_field")]
    pub min_value: i64,
    /// Inclusive maximum; 0 = no maximum (as in otelcol).
    #[serde(deserialize_with = "de::i64_field")]
    pub max_value: i64,
    /// Invert: a match vetoes sampling, no match (or no key) samples.
    pub invert_match: bool,
}

/// `probabilistic`: a share of trace IDs, by FNV-1a hash.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Salt hashed before the trace ID; empty = `default-hash-seed`.
    pub hash_salt: String,
    /// Percentage of traces to sample; >= 100 samples all.
    pub sampling_percentage: f64,
}

/// `status_code`: any span with one of these status codes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// `OK`, `ERROR` and/or `UNSET`.
    pub status_codes: Vec<String>,
}

/// `string_attribute`: a string attribute equal to (or matching) a value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// Attribute key, looked up on resources and spans.
    pub key: String,
    /// Exact values, or RE2-style regexes when `enabled_regex_matching`.
    pub values: Vec<String>,
    /// Treat `values` as unanchored regexes.
    pub enabled_regex_matching: bool,
    /// Size of the value -> matched cache for regexes; <= 0 means 128.
    #[serde(deserialize_with = "de::i64_field")]
    pub cache_max_size: i64,
    /// Invert: a match vetoes sampling, no match (or no key) samples.
    pub invert_match: bool,
}

/// `trace_state`: a W3C tracestate key with one of the values.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceStateConfig {
    /// The tracestate key.
    pub key: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// `rate_limiting`: a token bucket of spans.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Sustained spans per second.
    #[serde(deserialize_with = "de::i64_field")]
    pub spans_per_second: i64,
    /// Bucket size in spans; <= 0 means twice `spans_per_second`.
    #[serde(deserialize_with = "de::i64_field")]
    pub burst_capacity: i64,
}

/// `bytes_limiting`: a token bucket of OTLP bytes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BytesLimitingConfig {
    /// Sustained bytes per second.
    #[serde(deserialize_with = "de::i64_field")]
    pub bytes_per_second: i64,
    /// Bucket size in bytes; <= 0 means twice `bytes_per_second`.
    #[serde(deserialize_with = "de::i64_field")]
    pub burst_capacity: i64,
}

/// `span_count`: number of spans within `[min_spans, max_spans]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanCountConfig {
    /// Inclusive minimum.
    #[serde(deserialize_with = "de::i32_field")]
    pub min_spans: i32,
    /// Inclusive maximum; 0 = none.
    #[serde(deserialize_with = "de::i32_field")]
    pub max_spans: i32,
}

/// `boolean_attribute`: a bool attribute equal to `value`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    /// Attribute key, looked up on resources and spans.
    pub key: String,
    /// The value to match.
    pub value: bool,
    /// Invert: a match vetoes sampling, no match (or no key) samples.
    pub invert_match: bool,
}

/// `and`: sampled when every sub-policy samples.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AndConfig {
    /// The sub-policies.
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `not`: the opposite of one sub-policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotConfig {
    /// The sub-policy.
    pub not_sub_policy: Option<Box<PolicyConfig>>,
}

/// `drop`: the trace is dropped, whatever other policies say, when every
/// sub-policy samples.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropConfig {
    /// The sub-policies.
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// `composite`: sub-policies sharing a spans-per-second budget.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeConfig {
    /// The total budget in spans per second.
    #[serde(deserialize_with = "de::i64_field")]
    pub max_total_spans_per_second: i64,
    /// Sub-policy names. Accepted and checked, but, as in otelcol, the
    /// sub-policies are evaluated in `composite_sub_policy` order.
    pub policy_order: Vec<String>,
    /// The sub-policies.
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Budget shares; a sub-policy not listed gets no budget.
    pub rate_allocation: Vec<RateAllocationConfig>,
}

/// One `composite.rate_allocation` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateAllocationConfig {
    /// Sub-policy name.
    pub policy: String,
    /// Percent of `max_total_spans_per_second`; <= 0 means an equal share.
    #[serde(deserialize_with = "de::i64_field")]
    pub percent: i64,
}

/// One problem in a configuration: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// YAML path relative to the processor section, e.g.
    /// `policies[1].string_attribute.values[0]` (empty for the section itself).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// An invalid `tail_sampling` configuration: every problem found, each with
/// its YAML path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    issues: Vec<ConfigIssue>,
}

impl ConfigError {
    pub(crate) fn new(issues: Vec<ConfigIssue>) -> Self {
        ConfigError { issues }
    }

    pub(crate) fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            issues: vec![ConfigIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// The problems, in the order they appear in the config.
    pub fn issues(&self) -> &[ConfigIssue] {
        &self.issues
    }

    /// The same errors with `prefix` put before every path, e.g.
    /// `processors.tail_sampling`.
    pub fn with_path_prefix(mut self, prefix: &str) -> Self {
        for issue in &mut self.issues {
            issue.path = if issue.path.is_empty() {
                prefix.to_owned()
            } else if issue.path.starts_with('[') {
                format!("{prefix}{}", issue.path)
            } else {
                format!("{prefix}.{}", issue.path)
            };
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl SamplerConfig {
    /// Parses the processor section from YAML text.
    ///
    /// ```
    /// let cfg = sampling::SamplerConfig::from_yaml(
    ///     "decision_wait: 10s\npolicies: [{name: all, type: always_sample}]",
    /// ).unwrap();
    /// assert_eq!(cfg.decision_wait, std::time::Duration::from_secs(10));
    ///
    /// let err = sampling::SamplerConfig::from_yaml("policies: [{name: a, typo: 1}]").unwrap_err();
    /// assert!(err.to_string().starts_with("policies[0].typo: unknown field `typo`"), "{err}");
    /// ```
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(yaml);
        Self::from_deserializer(deserializer)
    }

    /// Reads the processor section from any serde deserializer (for example a
    /// `serde_yaml_ng::Value` already extracted from a whole collector config),
    /// reporting errors with their path. A null section is the defaults.
    pub fn from_deserializer<'de, D>(deserializer: D) -> Result<Self, ConfigError>
    where
        D: serde::Deserializer<'de>,
        D::Error: fmt::Display,
    {
        let parsed: Result<Option<SamplerConfig>, _> =
            serde_path_to_error::deserialize(deserializer);
        match parsed {
            Ok(cfg) => Ok(cfg.unwrap_or_default()),
            Err(err) => {
                let path = err.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let mut message = err.into_inner().to_string();
                // serde_yaml_ng already prefixes some messages with the path of
                // the enclosing value; ours is at least as precise.
                if let Some((head, rest)) = message.split_once(": ")
                    && !head.is_empty()
                    && !head.contains(' ')
                    && path.starts_with(head)
                {
                    message = rest.to_owned();
                }
                Err(ConfigError::single(path, message))
            }
        }
    }

    /// Checks everything [`Sampler::new`](crate::Sampler::new) checks,
    /// without building a sampler.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::engine::Settings::from_config(self)?;
        crate::decision::PolicySet::build(&self.policies, self.sample_on_first_match)?;
        Ok(())
    }

    /// The sampled-cache size in effect (ours: defaults to `num_traces`).
    pub fn effective_sampled_cache_size(&self) -> u64 {
        self.decision_cache
            .sampled_cache_size
            .unwrap_or(self.num_traces)
    }

    /// The not-sampled-cache size in effect (ours: defaults to `num_traces`).
    pub fn effective_non_sampled_cache_size(&self) -> u64 {
        self.decision_cache
            .non_sampled_cache_size
            .unwrap_or(self.num_traces)
    }
}

#[cfg(test)]
pub(crate) mod tests;
