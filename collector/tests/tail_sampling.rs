//! The gateway's tail sampling end to end: the gateway binary with its
//! embedded default config (the original chart's policy set; only the
//! listeners, the exporter and `decision_wait` overridden), the OpenTelemetry
//! Python SDK (`tests/py/send_sampling_population.py`) sending a population
//! of traces over OTLP/gRPC, and the `file` exporter, which must hold exactly
//! the traces the policies keep, each with all its spans.

mod support;

use collector::role::Role;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use support::{Collector, eventually, metric_sum, read_file_exporter};

/// Categories every policy set keeps (errors, HTTP 4xx/5xx as strings,
/// demo services, non-ollyscale services).
const ALWAYS_KEPT: &[&str] = &[
    "error",
    "http_4xx",
    "http_5xx",
    "demo",
    "otel_demo",
    "ai_agent",
    "non_ollyscale",
    "mixed_demo",
];
/// Categories only `sample-ollyscale-success` can keep: 5% by hash. An INT
/// `http.status_code` of 500 is not a string, so `http-errors` ignores it.
const BY_HASH: &[&str] = &[
    "int_500",
    "mixed",
    "unanchored",
    "ollyscale_ok",
    "ollyscale_success",
];

/// otelcol's threshold for 5%: `u64::MAX * 0.05` (the float64 nearest 0.05
/// is 0x3FA999999999999A) computed exactly, rounded to 64 significant bits,
/// truncated: 922337203685477631.95... -> 922337203685477631.9375 -> this.
const THRESHOLD_5_PERCENT: u64 = 922_337_203_685_477_631;

fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `probabilistic` at 5% with the default salt keeps the trace.
fn kept_by_hash(trace_id: &str) -> bool {
    let mut input = b"default-hash-seed".to_vec();
    input.extend_from_slice(&unhex(trace_id));
    fnv1a_64(&input) <= THRESHOLD_5_PERCENT
}

struct Population {
    /// trace ID -> (category, span IDs)
    traces: BTreeMap<String, (String, BTreeSet<String>)>,
}

fn send_population(endpoint: &str) -> Population {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/send_sampling_population.py"
    );
    let mut command = Command::new(support::python());
    command
        .arg(script)
        .args(["--endpoint", endpoint, "--seed", "7"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("run the Python SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "send_sampling_population.py failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the script:\n{stdout}\n{stderr}"));
    let summary: Json = serde_json::from_str(line).expect("script output is JSON");
    let mut traces = BTreeMap::new();
    for t in summary["traces"].as_array().expect("traces") {
        let id = t["trace_id"].as_str().expect("trace_id").to_string();
        let category = t["category"].as_str().expect("category").to_string();
        let spans = t["span_ids"]
            .as_array()
            .expect("span_ids")
            .iter()
            .map(|s| s.as_str().expect("span id").to_string())
            .collect();
        assert!(
            traces.insert(id.clone(), (category, spans)).is_none(),
            "duplicate trace {id}"
        );
    }
    Population { traces }
}

#[test]
fn the_gateway_keeps_exactly_what_the_original_policies_keep() {
    // The section must be the chart's, unchanged.
    assert_eq!(
        tail_sampling_section(Role::Gateway.default_config()),
        tail_sampling_section(include_str!("data/original-gateway.yaml")),
        "the embedded gateway config must carry the original tail_sampling section"
    );

    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = out_dir.path().join("sampled.json");
    let overlay = format!(
        r#"yaml:
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}, http: {{endpoint: "127.0.0.1:0"}}}}}}}}
processors: {{batch: {{timeout: 50ms}}}}
exporters: {{file: {{path: "{}"}}}}
extensions: {{health_check: {{endpoint: "127.0.0.1:0"}}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:0"}}}}
  pipelines:
    traces: {{exporters: [file]}}
    metrics: {{exporters: [file]}}
    logs: {{exporters: [file]}}
"#,
        out.display()
    );
    let mut collector = Collector::start_with_args(
        support::binary("gateway-collector"),
        Role::Gateway.default_config(),
        &[
            "--config",
            &overlay,
            "--set",
            "processors.tail_sampling.decision_wait=1s",
        ],
    );
    let grpc = collector.address("otlp", "grpc");
    let population = send_population(&format!("http://{grpc}"));
    let total = population.traces.len();

    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kept_by_category: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, (category, spans)) in &population.traces {
        let keep = if ALWAYS_KEPT.contains(&category.as_str()) {
            true
        } else if BY_HASH.contains(&category.as_str()) {
            kept_by_hash(id)
        } else {
            panic!("unknown category {category}")
        };
        let entry = kept_by_category.entry(category).or_default();
        entry.1 += 1;
        if keep {
            entry.0 += 1;
            expected.insert(id.clone(), spans.clone());
        }
    }
    eprintln!("(kept, sent) by category: {kept_by_category:?}");
    // The population exercises both outcomes of the hash rule.
    let (kept, of) = kept_by_category["ollyscale_success"];
    assert!(
        kept > 0 && kept < of,
        "seed 7 should keep some, not all: {kept_by_category:?}"
    );

    // Every trace is decided, then the sampled ones are all in the file.
    let decided_metric = "otelcol_processor_tail_sampling_global_count_traces_sampled_total";
    eventually(
        "every trace decided",
        || metric_sum(&collector.metrics_text(), decided_metric, &[]),
        |n| *n >= total as f64,
    );
    let expected_spans: usize = expected.values().map(BTreeSet::len).sum();
    let contents = eventually(
        "the sampled spans in the file",
        || read_file_exporter(&out),
        |c| c.span_count() >= expected_spans,
    );
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for span in contents.spans() {
        let fresh = got
            .entry(hex(&span.trace_id))
            .or_default()
            .insert(hex(&span.span_id));
        assert!(fresh, "span {} written twice", hex(&span.span_id));
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !got.contains_key(*id))
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .map(|id| (id, population.traces.get(id).map(|t| &t.0)))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}; kept by category: {kept_by_category:?}"
    );
    assert_eq!(got, expected, "each kept trace with all its spans");

    // The self-metrics agree.
    let text = collector.metrics_text();
    let metric = |name: &str, labels: &[(&str, &str)]| {
        metric_sum(
            &text,
            &format!("otelcol_processor_tail_sampling_{name}_total"),
            labels,
        )
    };
    assert_eq!(
        metric("global_count_traces_sampled", &[("sampled", "true")]),
        expected.len() as f64
    );
    assert_eq!(
        metric("global_count_traces_sampled", &[("sampled", "false")]),
        (total - expected.len()) as f64
    );
    assert_eq!(metric("new_trace_id_received", &[]), total as f64);
    let strings = kept_by_category["http_4xx"].1 + kept_by_category["http_5xx"].1;
    assert_eq!(
        metric(
            "count_traces_sampled",
            &[("policy", "http-errors"), ("sampled", "true")]
        ),
        strings as f64,
        "only string status codes match the regexes"
    );
    assert_eq!(
        metric(
            "count_traces_sampled",
            &[("policy", "errors"), ("sampled", "true")]
        ),
        kept_by_category["error"].1 as f64
    );
    assert_eq!(
        metric_sum(
            &text,
            "otelcol_processor_tail_sampling_sampling_traces_on_memory",
            &[]
        ),
        0.0
    );
    assert_eq!(
        metric_sum(&text, "otelcol_processor_dropped_items_total", &[]),
        0.0
    );

    // SIGTERM: a clean exit.
    collector.signal(libc::SIGTERM);
    let status = collector.wait_exit();
    assert!(status.success(), "{status}\n{}", collector.log_text());
}

/// `processors.tail_sampling` of a config, as JSON.
fn tail_sampling_section(yaml: &str) -> Json {
    let doc: Json = serde_yaml_ng::from_str(yaml).expect("a YAML config");
    let section = doc["processors"]["tail_sampling"].clone();
    assert!(section.is_object(), "no processors.tail_sampling in {yaml}");
    section
}
