//! Using the sampling engine on its own, with the gateway's otelcol config.
//!
//! Builds a sampler from the `tail_sampling` section of the original gateway
//! config, feeds it a handful of traces, advances time and prints what was
//! decided and why.
//!
//! Run with `cargo run -p sampling --example standalone`.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sampling::{Sampler, SamplerConfig, Timestamp, TraceId};

/// `processors.tail_sampling` of the gateway in the original chart.
const GATEWAY_TAIL_SAMPLING: &str = r#"
processors:
  tail_sampling:
    decision_wait: 10s
    num_traces: 50000
    expected_new_traces_per_sec: 100
    policies:
      - name: errors
        type: status_code
        status_code:
          status_codes: [ERROR]
      - name: http-errors
        type: string_attribute
        string_attribute:
          key: http.status_code
          values: ["4[0-9]{2}", "5[0-9]{2}"]
          enabled_regex_matching: true
      - name: keep-demos
        type: string_attribute
        string_attribute:
          key: service.name
          values: [demo-.*, otel-demo-.*, ai-agent.*]
          enabled_regex_matching: true
      - name: keep-non-ollyscale
        type: and
        and:
          and_sub_policy:
            - name: not-ollyscale
              type: string_attribute
              string_attribute:
                key: service.name
                values: [ollyscale-.*]
                enabled_regex_matching: true
                invert_match: true
      - name: sample-ollyscale-success
        type: and
        and:
          and_sub_policy:
            - name: ollyscale-services
              type: string_attribute
              string_attribute:
                key: service.name
                values: [ollyscale-.*]
                enabled_regex_matching: true
            - name: not-error
              type: status_code
              status_code:
                status_codes: [OK, UNSET]
            - name: probabilistic
              type: probabilistic
              probabilistic:
                sampling_percentage: 5
"#;

const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn trace_id(n: u64) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    TraceId(id)
}

/// A two-span trace (root + child) of `service`.
fn trace(id: TraceId, service: &str, code: i32, attrs: Vec<KeyValue>) -> ResourceSpans {
    let span = |n: u8, parent: Option<u8>| Span {
        trace_id: id.0.to_vec(),
        span_id: vec![n; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("{service} op {n}"),
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n) * 1_000_000,
        end_time_unix_nano: 1_700_000_000_050_000_000 + u64::from(n) * 1_000_000,
        attributes: attrs.clone(),
        status: Some(Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    };
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string_attr("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span(1, None), span(2, Some(1))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Take the processor section out of a whole collector config, as a
    // program embedding the engine would.
    let whole: serde_yaml_ng::Value = serde_yaml_ng::from_str(GATEWAY_TAIL_SAMPLING)?;
    let section = whole["processors"]["tail_sampling"].clone();
    let config = SamplerConfig::from_deserializer(section)
        .map_err(|e| e.with_path_prefix("processors.tail_sampling"))?;
    let mut sampler = Sampler::new(config)?;
    println!(
        "policies: {}",
        sampler.policy_names().collect::<Vec<_>>().join(", ")
    );

    let mut labels = Vec::new();
    let mut batch = Vec::new();
    let mut add = |label: String, rs: ResourceSpans| {
        labels.push((
            TraceId::from_slice(&rs.scope_spans[0].spans[0].trace_id),
            label,
        ));
        batch.push(rs);
    };
    add(
        "ollyscale-api with an ERROR span".into(),
        trace(trace_id(1), "ollyscale-api", STATUS_ERROR, vec![]),
    );
    add(
        "ollyscale-web, http.status_code \"404\"".into(),
        trace(
            trace_id(2),
            "ollyscale-web",
            STATUS_OK,
            vec![string_attr("http.status_code", "404")],
        ),
    );
    add(
        "demo-frontend".into(),
        trace(trace_id(3), "demo-frontend", STATUS_OK, vec![]),
    );
    add(
        "checkout (not an ollyscale service)".into(),
        trace(trace_id(4), "checkout", STATUS_OK, vec![]),
    );
    for n in 10..30 {
        add(
            format!("ollyscale-api success #{n}"),
            trace(trace_id(n), "ollyscale-api", STATUS_OK, vec![]),
        );
    }

    let t0 = Timestamp::ZERO;
    let outcome = sampler.ingest(batch, t0);
    println!(
        "t=0s: buffered {} spans of {} traces",
        outcome.buffered_spans,
        sampler.pending_traces()
    );
    println!(
        "t=9s: {} traces decided",
        sampler.tick(t0 + Duration::from_secs(9)).len()
    );

    let decided = sampler.tick(t0 + Duration::from_secs(10));
    println!("t=10s: {} traces decided", decided.len());
    for d in &decided {
        let label = labels
            .iter()
            .find(|(id, _)| *id == d.trace_id)
            .map_or("?", |(_, l)| l.as_str());
        let by: Vec<&str> = d.policies.iter().map(|p| &**p).collect();
        println!(
            "  {} {:<40} {:<12} {} spans  {}",
            d.trace_id,
            label,
            format!("{:?}", d.decision),
            d.span_count,
            if by.is_empty() {
                String::new()
            } else {
                format!("by {}", by.join(", "))
            }
        );
    }

    // A span arriving after the decision follows it.
    let late = sampler.ingest(
        vec![trace(trace_id(1), "ollyscale-api", STATUS_OK, vec![])],
        t0 + Duration::from_secs(12),
    );
    println!(
        "t=12s: late spans of the error trace forwarded at once: {}",
        late.late_sampled_spans
    );

    let stats = sampler.stats();
    println!(
        "global: {} sampled, {} not sampled, {} dropped",
        stats.global.sampled, stats.global.not_sampled, stats.global.dropped
    );
    for p in &stats.policies {
        println!(
            "  policy {:<26} sampled={} not_sampled={}",
            p.name,
            p.sampled_label_true(),
            p.sampled_label_false()
        );
    }
    Ok(())
}
