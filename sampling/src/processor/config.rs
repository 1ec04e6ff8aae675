//! The processor's YAML section: the engine's [`SamplerConfig`] plus the
//! runtime settings of ours, and how the limits are divided among shards.

use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use crate::config::{ConfigError, ConfigIssue, PolicyConfig, SamplerConfig};

/// Most shards a processor may run.
pub const MAX_SHARDS: usize = 64;
/// Shards used when `num_shards` is 0 (the default) and the number of CPUs
/// cannot be read.
const FALLBACK_SHARDS: usize = 4;

/// The `tail_sampling` section as the collector's config loader hands it to
/// the factory: kept as YAML, parsed into a [`TailSamplingConfig`] by the
/// factory's `validate` so that every problem is reported with its own path
/// (`policies[1].string_attribute.values[0]`), not the section's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TailSamplingSection(pub Value);

impl<'de> Deserialize<'de> for TailSamplingSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(TailSamplingSection)
    }
}

/// The processor's settings.
#[derive(Clone, Debug, Default)]
pub struct TailSamplingConfig {
    /// Everything otelcol's `tail_sampling` has, plus `max_memory_mib`, as
    /// the engine reads it. Limits are for the whole processor; each shard
    /// gets its share (see [`TailSamplingConfig::shard_config`]).
    pub sampler: SamplerConfig,
    /// Ours, `num_shards`: independent samplers, each owning the traces whose
    /// ID hashes to it, each deciding on its own task. 0 (the default) means
    /// one per CPU, at most 16.
    pub num_shards: usize,
    /// Ours, `record_policy`: add the `tailsampling.policy` scope attribute
    /// to sampled spans (otelcol's `processor.tailsamplingprocessor.recordpolicy`
    /// feature gate). Default false.
    pub record_policy: bool,
}

impl TailSamplingConfig {
    /// Parses the section; paths in errors are relative to it.
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        let mut value = match value {
            Value::Null => Value::Mapping(Default::default()),
            other => other,
        };
        let mut issues = Vec::new();
        let mut num_shards = 0;
        let mut record_policy = false;
        if let Value::Mapping(map) = &mut value {
            if let Some(raw) = map.shift_remove("num_shards") {
                match as_u64(&raw) {
                    Some(n) if n <= MAX_SHARDS as u64 => num_shards = n as usize,
                    _ => issues.push(issue(
                        "num_shards",
                        format!(
                            "expected a number of shards from 0 (one per CPU) to {MAX_SHARDS}, got {}",
                            describe(&raw)
                        ),
                    )),
                }
            }
            if let Some(raw) = map.shift_remove("record_policy") {
                match as_bool(&raw) {
                    Some(b) => record_policy = b,
                    None => issues.push(issue(
                        "record_policy",
                        format!("expected true or false, got {}", describe(&raw)),
                    )),
                }
            }
        }
        let sampler = SamplerConfig::from_deserializer(value);
        let sampler = match sampler {
            Ok(sampler) if issues.is_empty() => sampler,
            Ok(_) => return Err(ConfigError::new(issues)),
            Err(e) => {
                issues.extend_from_slice(e.issues());
                return Err(ConfigError::new(issues));
            }
        };
        Ok(TailSamplingConfig {
            sampler,
            num_shards,
            record_policy,
        })
    }

    /// Parses the section from YAML text.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml_ng::from_str(yaml)
            .map_err(|e| ConfigError::single("", format!("invalid YAML: {e}")))?;
        Self::from_value(value)
    }

    /// Everything the engine checks, for the whole config and for one shard's
    /// share of it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sampler.validate()?;
        self.shard_config(self.shards()).validate()
    }

    /// The number of shards in effect.
    pub fn shards(&self) -> usize {
        if self.num_shards > 0 {
            return self.num_shards.min(MAX_SHARDS);
        }
        std::thread::available_parallelism()
            .map_or(FALLBACK_SHARDS, |n| n.get())
            .clamp(1, 16)
    }

    /// One shard's config out of `shards`: the limits that hold for the
    /// whole processor are divided, rounding up, so that the shards together
    /// keep them (to within the rounding): `num_traces`, `max_memory_mib`,
    /// `expected_new_traces_per_sec`, explicit `decision_cache` sizes, and the
    /// rates of `rate_limiting`, `bytes_limiting` and `composite` (with their
    /// bursts), at any depth. Trace IDs are spread evenly over the shards, so
    /// each sees about its share of the traffic. `maximum_trace_size_bytes`
    /// and the waits are per trace and stay as they are.
    pub fn shard_config(&self, shards: usize) -> SamplerConfig {
        let n = shards.max(1) as u64;
        let mut cfg = self.sampler.clone();
        if n == 1 {
            return cfg;
        }
        cfg.num_traces = share(cfg.num_traces, n);
        cfg.max_memory_mib = share(cfg.max_memory_mib, n);
        cfg.expected_new_traces_per_sec = share(cfg.expected_new_traces_per_sec, n);
        if let Some(size) = &mut cfg.decision_cache.sampled_cache_size {
            *size = share(*size, n);
        }
        if let Some(size) = &mut cfg.decision_cache.non_sampled_cache_size {
            *size = share(*size, n);
        }
        for policy in &mut cfg.policies {
            divide_rates(policy, n);
        }
        cfg
    }
}

/// `value / n` rounded up; 0 stays 0 (it means "off" or "none").
fn share(value: u64, n: u64) -> u64 {
    value.div_ceil(n)
}

/// `value / n` rounded up for positive rates; 0 and negative values keep
/// their meaning (default or invalid) and stay as they are.
fn share_i64(value: i64, n: u64) -> i64 {
    if value <= 0 {
        return value;
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    value.div_euclid(n) + i64::from(value.rem_euclid(n) != 0)
}

fn divide_rates(policy: &mut PolicyConfig, n: u64) {
    if let Some(rl) = &mut policy.rate_limiting {
        rl.spans_per_second = share_i64(rl.spans_per_second, n);
        rl.burst_capacity = share_i64(rl.burst_capacity, n);
    }
    if let Some(bl) = &mut policy.bytes_limiting {
        bl.bytes_per_second = share_i64(bl.bytes_per_second, n);
        bl.burst_capacity = share_i64(bl.burst_capacity, n);
    }
    if let Some(and) = &mut policy.and {
        for sub in &mut and.and_sub_policy {
            divide_rates(sub, n);
        }
    }
    if let Some(not) = &mut policy.not
        && let Some(sub) = &mut not.not_sub_policy
    {
        divide_rates(sub, n);
    }
    if let Some(drop) = &mut policy.drop {
        for sub in &mut drop.drop_sub_policy {
            divide_rates(sub, n);
        }
    }
    if let Some(composite) = &mut policy.composite {
        composite.max_total_spans_per_second = share_i64(composite.max_total_spans_per_second, n);
        for sub in &mut composite.composite_sub_policy {
            divide_rates(sub, n);
        }
    }
}

fn issue(path: &str, message: String) -> ConfigIssue {
    ConfigIssue {
        path: path.into(),
        message,
    }
}

/// A non-negative integer, also written as a string (as `${env:...}` gives).
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(yaml: &str) -> Result<TailSamplingConfig, ConfigError> {
        TailSamplingConfig::from_yaml(yaml)
    }

    fn first_issue(yaml: &str) -> ConfigIssue {
        match parse(yaml).and_then(|c| c.validate().map(|()| c)) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.issues()[0].clone(),
        }
    }

    #[test]
    fn our_keys_are_taken_out_before_the_engine_reads_the_rest() {
        let cfg = parse(
            "num_shards: 3\nrecord_policy: true\ndecision_wait: 2s\npolicies: [{name: a, type: always_sample}]",
        )
        .unwrap();
        assert_eq!(cfg.num_shards, 3);
        assert_eq!(cfg.shards(), 3);
        assert!(cfg.record_policy);
        assert_eq!(cfg.sampler.decision_wait, Duration::from_secs(2));
        cfg.validate().unwrap();

        let defaults = parse("policies: [{name: a, type: always_sample}]").unwrap();
        assert_eq!(defaults.num_shards, 0);
        assert!((1..=16).contains(&defaults.shards()));
        assert!(!defaults.record_policy);
    }

    #[test]
    fn errors_name_the_path_inside_the_section() {
        let i = first_issue(
            "policies:\n  - {name: a, type: always_sample}\n  - {name: b, type: string_attribute, string_attribute: {key: k, values: ['(' ], enabled_regex_matching: true}}",
        );
        assert_eq!(i.path, "policies[1].string_attribute.values[0]");
        assert!(i.message.contains("regex"), "{}", i.message);

        let i = first_issue("num_shards: many\npolicies: [{name: a, type: always_sample}]");
        assert_eq!(i.path, "num_shards");
        assert!(i.message.contains("\"many\""), "{}", i.message);

        let i = first_issue("num_shards: 65\npolicies: [{name: a, type: always_sample}]");
        assert_eq!(i.path, "num_shards");

        let i = first_issue("record_policy: 2\npolicies: [{name: a, type: always_sample}]");
        assert_eq!(i.path, "record_policy");

        let i = first_issue("decision_wait: soon\npolicies: [{name: a, type: always_sample}]");
        assert_eq!(i.path, "decision_wait");

        let i = first_issue("policies: [{name: a, type: ottl_condition, ottl_condition: {}}]");
        assert_eq!(i.path, "policies[0].type");
        assert!(i.message.contains("not supported"), "{}", i.message);
    }

    #[test]
    fn limits_are_divided_among_shards_rounding_up() {
        let cfg = parse(
            r#"
num_traces: 50000
max_memory_mib: 10
expected_new_traces_per_sec: 100
decision_cache: {sampled_cache_size: 1001, non_sampled_cache_size: 0}
policies:
  - {name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 10}}
  - {name: bl, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000, burst_capacity: 4000}}
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 7
      policy_order: [inner]
      composite_sub_policy:
        - {name: inner, type: and, and: {and_sub_policy: [{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 3}}]}}
      rate_allocation: [{policy: inner, percent: 100}]
"#,
        )
        .unwrap();
        let shard = cfg.shard_config(4);
        assert_eq!(shard.num_traces, 12500);
        assert_eq!(shard.max_memory_mib, 3);
        assert_eq!(shard.expected_new_traces_per_sec, 25);
        assert_eq!(shard.decision_cache.sampled_cache_size, Some(251));
        assert_eq!(shard.decision_cache.non_sampled_cache_size, Some(0));
        let rl = shard.policies[0].rate_limiting.as_ref().unwrap();
        assert_eq!((rl.spans_per_second, rl.burst_capacity), (3, 0));
        let bl = shard.policies[1].bytes_limiting.as_ref().unwrap();
        assert_eq!((bl.bytes_per_second, bl.burst_capacity), (250, 1000));
        let c = shard.policies[2].composite.as_ref().unwrap();
        assert_eq!(c.max_total_spans_per_second, 2);
        let inner = c.composite_sub_policy[0]
            .and
            .as_ref()
            .unwrap()
            .and_sub_policy[0]
            .rate_limiting
            .as_ref()
            .unwrap();
        assert_eq!(inner.spans_per_second, 1);
        crate::Sampler::new(shard).unwrap();
        // One shard: the config as written.
        assert_eq!(cfg.shard_config(1).num_traces, 50000);
    }
}
