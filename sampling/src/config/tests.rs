use std::time::Duration;

use super::*;

/// The gateway's `processors.tail_sampling` section from the original chart.
pub(crate) fn original_gateway_section() -> serde_yaml_ng::Value {
    let whole: serde_yaml_ng::Value = serde_yaml_ng::from_str(include_str!(
        "../../../collector/tests/data/original-gateway.yaml"
    ))
    .unwrap();
    whole["processors"]["tail_sampling"].clone()
}

fn errors(yaml: &str) -> Vec<String> {
    match SamplerConfig::from_yaml(yaml).and_then(|c| c.validate().map(|()| c)) {
        Ok(_) => Vec::new(),
        Err(e) => e.issues().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn original_gateway_config_loads_unchanged() {
    let cfg = SamplerConfig::from_deserializer(original_gateway_section()).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.decision_wait, Duration::from_secs(10));
    assert_eq!(cfg.num_traces, 50_000);
    assert_eq!(cfg.expected_new_traces_per_sec, 100);
    assert_eq!(cfg.policies.len(), 5);
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "errors",
            "http-errors",
            "keep-demos",
            "keep-non-ollyscale",
            "sample-ollyscale-success"
        ]
    );
    let and = cfg.policies[4].and.as_ref().unwrap();
    assert_eq!(and.and_sub_policy.len(), 3);
    assert_eq!(
        and.and_sub_policy[2]
            .probabilistic
            .as_ref()
            .unwrap()
            .sampling_percentage,
        5.0
    );
    // Ours: caches on, sized from num_traces.
    assert_eq!(cfg.effective_sampled_cache_size(), 50_000);
    assert_eq!(cfg.effective_non_sampled_cache_size(), 50_000);
}

#[test]
fn defaults_match_otelcol() {
    let cfg = SamplerConfig::from_yaml("policies: [{name: a, type: always_sample}]").unwrap();
    assert_eq!(cfg.decision_wait, Duration::from_secs(30));
    assert_eq!(cfg.decision_wait_after_root_received, Duration::ZERO);
    assert_eq!(cfg.num_traces, 50_000);
    assert_eq!(cfg.expected_new_traces_per_sec, 0);
    assert!(!cfg.sample_on_first_match);
    assert!(!cfg.drop_pending_traces_on_shutdown);
    assert_eq!(cfg.maximum_trace_size_bytes, 0);
    assert_eq!(cfg.max_memory_mib, 512);
    // A null section is all defaults (and then fails: no policies).
    // As Go's time.Duration, a bare integer is nanoseconds.
    let ns = SamplerConfig::from_yaml("decision_wait: 10").unwrap();
    assert_eq!(ns.decision_wait, Duration::from_nanos(10));
    let null = SamplerConfig::from_yaml("~").unwrap();
    assert_eq!(null.num_traces, 50_000);
    assert_eq!(
        null.validate().unwrap_err().to_string(),
        "policies: at least one policy is required"
    );
}

#[test]
fn every_key_parses() {
    let cfg = SamplerConfig::from_yaml(
        r#"
decision_wait: 1m30s
decision_wait_after_root_received: 500ms
num_traces: "100_000"
expected_new_traces_per_sec: 10
decision_cache: {sampled_cache_size: 0, non_sampled_cache_size: 1000}
sample_on_first_match: true
drop_pending_traces_on_shutdown: true
maximum_trace_size_bytes: 1048576
block_on_overflow: false
sampling_strategy: trace-complete
max_memory_mib: 64
policies:
  - {name: a, type: always_sample}
  - {name: b, type: latency, latency: {threshold_ms: 10, upper_threshold_ms: 20}}
  - {name: c, type: numeric_attribute, numeric_attribute: {key: k, min_value: 1, max_value: 2, invert_match: true}}
  - {name: d, type: probabilistic, probabilistic: {hash_salt: s, sampling_percentage: 12.5}}
  - {name: e, type: status_code, status_code: {status_codes: [OK, ERROR, UNSET]}}
  - {name: f, type: string_attribute, string_attribute: {key: k, values: [a], enabled_regex_matching: true, cache_max_size: 10, invert_match: true}}
  - {name: g, type: trace_state, trace_state: {key: k, values: [v]}}
  - {name: h, type: trace_flags}
  - {name: i, type: rate_limiting, rate_limiting: {spans_per_second: 10, burst_capacity: 20}}
  - {name: j, type: bytes_limiting, bytes_limiting: {bytes_per_second: 10, burst_capacity: 20}}
  - {name: k, type: span_count, span_count: {min_spans: 1, max_spans: 3}}
  - {name: l, type: boolean_attribute, boolean_attribute: {key: k, value: true, invert_match: true}}
  - {name: m, type: and, and: {and_sub_policy: [{name: m1, type: always_sample}]}}
  - {name: n, type: not, not: {not_sub_policy: {name: n1, type: always_sample}}}
  - {name: o, type: drop, drop: {drop_sub_policy: [{name: o1, type: always_sample}]}}
  - name: p
    type: composite
    composite:
      max_total_spans_per_second: 100
      policy_order: [p1]
      composite_sub_policy: [{name: p1, type: always_sample}]
      rate_allocation: [{policy: p1, percent: 50}]
"#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.decision_wait, Duration::from_secs(90));
    assert_eq!(
        cfg.decision_wait_after_root_received,
        Duration::from_millis(500)
    );
    assert_eq!(cfg.num_traces, 100_000);
    assert_eq!(cfg.effective_sampled_cache_size(), 0);
    assert_eq!(cfg.effective_non_sampled_cache_size(), 1000);
    assert_eq!(cfg.policies.len(), 16);
}

#[test]
fn errors_carry_yaml_paths() {
    let table: &[(&str, &[&str])] = &[
        (
            "policies: [{name: a, type: x}]",
            &[
                "policies[0].type: unknown policy type \"x\"; expected one of always_sample, latency, numeric_attribute, probabilistic, status_code, string_attribute, trace_state, trace_flags, rate_limiting, bytes_limiting, span_count, boolean_attribute, and, not, drop, composite",
            ],
        ),
        (
            "policies: [{name: a, type: always_sample}, {name: b, type: string_attribute, string_attribute: {key: k, values: ['(x'], enabled_regex_matching: true}}]",
            &["policies[1].string_attribute.values[0]: invalid regex: "],
        ),
        (
            "policies: [{name: a, type: ottl_condition, ottl_condition: {error_mode: ignore, span: ['attributes[\"x\"] == 1']}}]",
            &["policies[0].type: policy type \"ottl_condition\" is not supported"],
        ),
        (
            "policies: [{name: a, type: always_sample}, {name: a, type: always_sample}, {type: always_sample}]",
            &[
                "policies[1].name: duplicate policy name \"a\"",
                "policies[2].name: policy name cannot be empty",
            ],
        ),
        (
            "decision_wait: 5x\npolicies: [{name: a, type: always_sample}]",
            &["decision_wait: unknown unit \"x\" in duration \"5x\""],
        ),
        (
            "num_traces: 0\nblock_on_overflow: true\nsampling_strategy: span-ingest\npolicies: [{name: a, type: always_sample}]",
            &[
                "num_traces: must be greater than 0",
                "block_on_overflow: true is not supported",
                "sampling_strategy: \"span-ingest\" is not supported",
            ],
        ),
        (
            "decision_cache: {sampled: 5}\npolicies: []",
            &["decision_cache.sampled: unknown field `sampled`"],
        ),
        (
            "policies: [{name: a, type: latency, latency: {threshold: 5}}]",
            &["policies[0].latency.threshold: unknown field `threshold`"],
        ),
        (
            "policies: [{name: a, type: and, and: {and_sub_policy: [{name: b, type: and, and: {and_sub_policy: [{name: c, type: status_code, status_code: {status_codes: [BAD]}}]}}]}}]",
            &[
                "policies[0].and.and_sub_policy[0].and.and_sub_policy[0].status_code.status_codes[0]: unknown status code \"BAD\"",
            ],
        ),
        (
            "num_traces: -1\npolicies: []",
            &["num_traces: -1 is out of range for a non-negative integer"],
        ),
    ];
    for (yaml, wanted) in table {
        let got = errors(yaml);
        assert_eq!(got.len(), wanted.len(), "{yaml}: {got:?}");
        for (g, w) in got.iter().zip(wanted.iter()) {
            assert!(g.starts_with(w), "{yaml}:\n got  {g}\n want {w}...");
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let mut yaml = String::from("{name: leaf, type: always_sample}");
    for i in 0..12 {
        yaml = format!("{{name: n{i}, type: not, not: {{not_sub_policy: {yaml}}}}}");
    }
    let got = errors(&format!("policies: [{yaml}]"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with("policies are nested too deeply (at most 8 levels)"),
        "{got:?}"
    );
}

#[test]
fn error_prefix() {
    let err = SamplerConfig::from_yaml("policies: [{name: a, type: x}]")
        .unwrap()
        .validate()
        .unwrap_err()
        .with_path_prefix("processors.tail_sampling");
    assert!(
        err.to_string()
            .starts_with("processors.tail_sampling.policies[0].type: unknown policy type"),
        "{err}"
    );
}
