use super::*;
use crate::component::{ComponentId, ErasedProcessor, Host};
use crate::consumer::{ConsumeError, Consumer};
use crate::pdata::{ClientInfo, Logs, Metrics, Payload, Telemetry, Traces};
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parking_lot::Mutex;
use prost::Message;

fn s(text: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(text.into())),
    }
}
fn i(n: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(n)),
    }
}
fn d(x: f64) -> AnyValue {
    AnyValue {
        value: Some(Value::DoubleValue(x)),
    }
}
fn b(x: bool) -> AnyValue {
    AnyValue {
        value: Some(Value::BoolValue(x)),
    }
}

fn list(values: Vec<AnyValue>) -> AnyValue {
    AnyValue {
        value: Some(Value::ArrayValue(ArrayValue { values })),
    }
}

fn kvs(pairs: &[(&str, AnyValue)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_string(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect()
}

fn traces(attributes: Vec<KeyValue>) -> Traces {
    Traces::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            ..Default::default()
        }],
    })
}

/// Keeps the last batch it got.
#[derive(Default)]
struct Last(Mutex<Option<Telemetry>>);

#[async_trait]
impl Consumer for Last {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        *self.0.lock() = Some(telemetry);
        Ok(())
    }
}

impl Last {
    fn take(&self) -> Telemetry {
        match self.0.lock().take() {
            Some(t) => t,
            None => panic!("nothing was passed on"),
        }
    }
}

fn parse(yaml: &str) -> Result<ResourceConfig, crate::config::ConfigError> {
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    ResourceFactory.parse("processors.resource", &value)?;
    crate::config::deserialize_at("processors.resource", value)
}

fn build(yaml: &str) -> (Arc<dyn Processor>, Arc<Last>) {
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    let last = Arc::new(Last::default());
    let ctx = CreateContext {
        id: ComponentId::new("resource", None),
        host: Host::new(),
    };
    match ProcessorFactory::create(
        &ResourceFactory,
        &ctx,
        &config,
        Signal::Traces,
        last.clone(),
    ) {
        Ok(p) => (p, last),
        Err(e) => panic!("{e}"),
    }
}

async fn run(yaml: &str, telemetry: Telemetry) -> Telemetry {
    let (processor, last) = build(yaml);
    if let Err(e) = processor.consume(telemetry).await {
        panic!("{e}");
    }
    last.take()
}

fn resource_attributes(telemetry: &Telemetry) -> Vec<KeyValue> {
    let Payload::Traces(batch) = &telemetry.payload else {
        panic!("expected traces");
    };
    batch.resources()[0]
        .resource
        .as_ref()
        .map(|r| r.attributes.clone())
        .unwrap_or_default()
}

async fn apply(yaml: &str, input: &[(&str, AnyValue)]) -> Vec<KeyValue> {
    let out = run(yaml, Telemetry::from(traces(kvs(input)))).await;
    resource_attributes(&out)
}

/// Attributes as (key, value) pairs.
type Attrs = Vec<(&'static str, AnyValue)>;

#[tokio::test]
async fn every_action_does_what_otelcol_does() {
    let cases: Vec<(&str, &str, Attrs, Attrs)> = vec![
        (
            "insert when absent",
            "{key: env, action: insert, value: prod}",
            vec![("a", s("1"))],
            vec![("a", s("1")), ("env", s("prod"))],
        ),
        (
            "insert keeps an existing value",
            "{key: env, action: insert, value: prod}",
            vec![("env", s("dev"))],
            vec![("env", s("dev"))],
        ),
        (
            "update when present",
            "{key: env, action: update, value: 3}",
            vec![("env", s("dev")), ("b", s("x"))],
            vec![("env", i(3)), ("b", s("x"))],
        ),
        (
            "update ignores an absent key",
            "{key: env, action: update, value: prod}",
            vec![("a", s("1"))],
            vec![("a", s("1"))],
        ),
        (
            "upsert replaces",
            "{key: env, action: upsert, value: 1.5}",
            vec![("env", s("dev"))],
            vec![("env", d(1.5))],
        ),
        (
            "upsert adds",
            "{key: on, action: upsert, value: true}",
            vec![],
            vec![("on", b(true))],
        ),
        (
            "upsert from another attribute",
            "{key: copy, action: upsert, from_attribute: src}",
            vec![("src", i(7))],
            vec![("src", i(7)), ("copy", i(7))],
        ),
        (
            "from_attribute of a missing attribute does nothing",
            "{key: copy, action: upsert, from_attribute: nope}",
            vec![("a", s("1"))],
            vec![("a", s("1"))],
        ),
        (
            "delete by key",
            "{key: secret, action: delete}",
            vec![("secret", s("x")), ("keep", s("y"))],
            vec![("keep", s("y"))],
        ),
        (
            "delete by pattern",
            "{pattern: '^tmp\\.', action: delete}",
            vec![("tmp.a", s("1")), ("keep", s("2")), ("tmp.b", s("3"))],
            vec![("keep", s("2"))],
        ),
        (
            "hash a string",
            "{key: user, action: hash}",
            vec![("user", s("secret"))],
            vec![(
                "user",
                s("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"),
            )],
        ),
        (
            "hash an int, a double and a bool by pattern (their binary forms, as otelcol)",
            "{pattern: '^h', action: hash}",
            vec![
                ("h1", i(42)),
                ("h2", d(1.5)),
                ("h3", b(true)),
                ("x", i(42)),
                ("h4", list(vec![s("a")])),
            ],
            vec![
                (
                    "h1",
                    s("ed049108bc18f2c64369e8d0ea42850bdd1a7d1dd340cfde716315579702a76c"),
                ),
                (
                    "h2",
                    s("e163f8cb0f7067a7fc78ca859a77f849aea3214f38fb75b884e4a16be725c905"),
                ),
                (
                    "h3",
                    s("4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"),
                ),
                ("x", i(42)),
                // Types otelcol cannot hash become an empty string.
                ("h4", s("")),
            ],
        ),
        (
            "extract named groups",
            "{key: url, action: extract, pattern: '^(?P<scheme>\\w+)://(?P<host>[^:/]+)(?::(?P<port>\\d+))?'}",
            vec![("url", s("https://example.com:8080/x")), ("host", s("old"))],
            vec![
                ("url", s("https://example.com:8080/x")),
                ("host", s("example.com")),
                ("scheme", s("https")),
                ("port", s("8080")),
            ],
        ),
        (
            "extract: an optional group that did not match gives an empty string",
            "{key: url, action: extract, pattern: '^(?P<scheme>\\w+)://(?P<host>[^:/]+)(?::(?P<port>\\d+))?'}",
            vec![("url", s("http://h/x"))],
            vec![
                ("url", s("http://h/x")),
                ("scheme", s("http")),
                ("host", s("h")),
                ("port", s("")),
            ],
        ),
        (
            "extract leaves non-matching and non-string values alone",
            "{key: url, action: extract, pattern: '^(?P<scheme>\\w+)://'}",
            vec![("url", i(5))],
            vec![("url", i(5))],
        ),
        (
            "convert string to int",
            "{key: n, action: convert, converted_type: int}",
            vec![("n", s("42"))],
            vec![("n", i(42))],
        ),
        (
            "convert leaves what does not parse unchanged",
            "{key: n, action: convert, converted_type: int}",
            vec![("n", s("forty-two"))],
            vec![("n", s("forty-two"))],
        ),
        (
            "convert double to int truncates",
            "{key: n, action: convert, converted_type: int}",
            vec![("n", d(2.9))],
            vec![("n", i(2))],
        ),
        (
            "convert int and string to double",
            "[{key: n, action: convert, converted_type: double}, {key: m, action: convert, converted_type: Double}]",
            vec![("n", i(3)), ("m", s("0.25"))],
            vec![("n", d(3.0)), ("m", d(0.25))],
        ),
        (
            "convert to string",
            "[{key: n, action: convert, converted_type: string}, {key: m, action: convert, converted_type: string}, {key: o, action: convert, converted_type: string}]",
            vec![("n", d(2.5)), ("m", b(true)), ("o", i(-4))],
            vec![("n", s("2.5")), ("m", s("true")), ("o", s("-4"))],
        ),
        (
            "actions apply in order",
            "[{key: a, action: insert, value: x}, {key: b, action: upsert, from_attribute: a}, {key: a, action: delete}]",
            vec![],
            vec![("b", s("x"))],
        ),
        (
            "action names are case-insensitive",
            "{key: env, action: UPSERT, value: prod}",
            vec![],
            vec![("env", s("prod"))],
        ),
    ];
    for (name, actions, input, want) in cases {
        let yaml = if actions.starts_with('[') {
            format!("attributes: {actions}")
        } else {
            format!("attributes: [{actions}]")
        };
        assert_eq!(apply(&yaml, &input).await, kvs(&want), "{name}");
    }
}

#[tokio::test]
async fn literal_lists_and_maps_become_arrays_and_kvlists() {
    let got = apply(
        "attributes: [{key: l, action: insert, value: [1, a, ~]}, {key: m, action: insert, value: {x: 1}}]",
        &[],
    )
    .await;
    let want = kvs(&[
        ("l", list(vec![i(1), s("a"), AnyValue { value: None }])),
        (
            "m",
            AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: kvs(&[("x", i(1))]),
                })),
            },
        ),
    ]);
    assert_eq!(got, want);
    // ... and render as JSON when converted to a string.
    let got = apply(
        "attributes: [{key: l, action: insert, value: [1, a]}, {key: l, action: convert, converted_type: string}]",
        &[],
    )
    .await;
    assert_eq!(got, kvs(&[("l", s("[1,\"a\"]"))]));
}

#[tokio::test]
async fn values_from_the_client() {
    let yaml = "attributes:
  - {key: tenant, action: insert, from_context: metadata.X-Tenant}
  - {key: peer, action: insert, from_context: client.address}
  - {key: groups, action: insert, from_context: metadata.group}
  - {key: missing, action: insert, from_context: metadata.absent}
  - {key: bare, action: insert, from_context: x-tenant}";
    let mut telemetry = Telemetry::from(traces(vec![]));
    telemetry.client = ClientInfo::with_metadata(
        Some("10.1.2.3:4567".parse().unwrap_or_else(|e| panic!("{e}"))),
        vec![
            ("x-tenant".into(), "acme".into()),
            ("group".into(), "a".into()),
            ("Group".into(), "b".into()),
        ],
    );
    let out = run(yaml, telemetry).await;
    let want = kvs(&[
        ("tenant", s("acme")),
        ("peer", s("10.1.2.3")),
        // Several values are joined with ';', as otelcol does.
        ("groups", s("a;b")),
        ("bare", s("acme")),
    ]);
    assert_eq!(resource_attributes(&out), want);
    // The client info travels on unchanged.
    assert_eq!(out.client.get("x-tenant"), vec!["acme"]);
}

#[tokio::test]
async fn applies_to_every_resource_of_every_signal() {
    let yaml = "attributes: [{key: telemetry.source, action: upsert, value: browser}]";
    let want = kvs(&[("telemetry.source", s("browser"))]);

    let (processor, last) = build(yaml);
    let spans = Traces::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans::default(), ResourceSpans::default()],
    });
    let metrics = Metrics::new(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics::default()],
    });
    let logs = Logs::new(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs::default()],
    });
    for telemetry in [
        Telemetry::from(spans),
        Telemetry::from(metrics),
        Telemetry::from(logs),
    ] {
        let signal = telemetry.signal();
        if let Err(e) = processor.consume(telemetry).await {
            panic!("{e}");
        }
        let out = last.take();
        let attributes: Vec<Vec<KeyValue>> = match &out.payload {
            Payload::Traces(b) => b
                .resources()
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
            Payload::Metrics(b) => b
                .resources()
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
            Payload::Logs(b) => b
                .resources()
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
        };
        assert!(!attributes.is_empty(), "{signal}");
        for got in attributes {
            assert_eq!(got, want, "{signal}");
        }
    }
    assert!(processor.capabilities().mutates_data);
}

#[tokio::test]
async fn leaves_batches_without_resources_untouched() {
    let yaml = "attributes: [{key: a, action: upsert, value: x}]";
    let empty = match Traces::decode(bytes::Bytes::new()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(empty.has_original_encoding());
    let out = run(yaml, Telemetry::from(empty)).await;
    let Payload::Traces(batch) = &out.payload else {
        panic!("expected traces");
    };
    assert!(batch.has_original_encoding(), "must not call modify");

    // With a resource, the encoding goes (the data changed).
    let bytes = traces(vec![]).into_request().encode_to_vec();
    let full = match Traces::decode(bytes.into()) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let out = run(yaml, Telemetry::from(full)).await;
    let Payload::Traces(batch) = &out.payload else {
        panic!("expected traces");
    };
    assert!(!batch.has_original_encoding());
    assert_eq!(resource_attributes(&out), kvs(&[("a", s("x"))]));
}

#[test]
fn config_errors_name_their_path() {
    let valid = "one of insert, update, upsert, delete, hash, extract, convert";
    let cases = [
        (
            "attributes: []",
            "processors.resource.attributes: at least one action is required".to_string(),
        ),
        (
            "{}",
            "processors.resource.attributes: at least one action is required".to_string(),
        ),
        (
            "attributes: [{key: a, action: frob, value: 1}]",
            format!("processors.resource.attributes[0].action: unknown action \"frob\" (expected {valid})"),
        ),
        (
            "attributes: [{key: a, value: 1}]",
            format!("processors.resource.attributes[0].action: missing (expected {valid})"),
        ),
        (
            "attributes: [{action: insert, value: 1}]",
            "processors.resource.attributes[0].key: required for action insert".to_string(),
        ),
        (
            "attributes: [{key: a, action: delete}, {key: b, action: upsert}]",
            "processors.resource.attributes[1]: action upsert needs exactly one of value, from_attribute, from_context (0 given)".to_string(),
        ),
        (
            "attributes: [{key: b, action: update, value: 1, from_attribute: c}]",
            "processors.resource.attributes[0]: action update needs exactly one of value, from_attribute, from_context (2 given)".to_string(),
        ),
        (
            "attributes: [{key: b, action: insert, value: 1, pattern: x}]",
            "processors.resource.attributes[0].pattern: not used by action insert".to_string(),
        ),
        (
            "attributes: [{action: delete}]",
            "processors.resource.attributes[0]: action delete needs key and/or pattern".to_string(),
        ),
        (
            "attributes: [{key: a, action: hash, value: 1}]",
            "processors.resource.attributes[0].value: not used by action hash".to_string(),
        ),
        (
            "attributes: [{key: a, action: convert}]",
            "processors.resource.attributes[0].converted_type: required for action convert (int, double or string)".to_string(),
        ),
        (
            "attributes: [{key: a, action: convert, converted_type: float}]",
            "processors.resource.attributes[0].converted_type: unknown type \"float\" (expected int, double or string)".to_string(),
        ),
        (
            "attributes: [{key: a, action: extract}]",
            "processors.resource.attributes[0].pattern: required for action extract (a regex with named groups)".to_string(),
        ),
        (
            "attributes: [{key: a, action: extract, pattern: 'a(b)'}]",
            "processors.resource.attributes[0].pattern: has no named groups ((?P<name>...)) to extract".to_string(),
        ),
        (
            "attributes: [{key: a, action: extract, pattern: '(?P<x>a)(b)'}]",
            "processors.resource.attributes[0].pattern: group 2 is unnamed; every group of an extract pattern must be named (use (?:...) for grouping)".to_string(),
        ),
        (
            "attributes: [{key: a, action: insert, from_context: auth.subject}]",
            "processors.resource.attributes[0].from_context: \"auth.subject\": authenticator attributes are not supported by this collector (expected metadata.<key> or client.address)".to_string(),
        ),
        (
            "attributes: [{key: a, action: insert, from_context: metadata.}]",
            "processors.resource.attributes[0].from_context: \"metadata.\" names no metadata key (expected metadata.<key> or client.address)".to_string(),
        ),
    ];
    for (yaml, want) in cases {
        match parse(yaml) {
            Ok(_) => panic!("{yaml:?} should be rejected"),
            Err(e) => assert_eq!(e.to_string(), want, "{yaml}"),
        }
    }

    let bad_regex = "attributes: [{key: a, action: delete}, {key: b, action: delete}, {action: delete, pattern: '('}]";
    let Err(e) = parse(bad_regex) else {
        panic!("an invalid regex must be rejected");
    };
    assert_eq!(e.path, "processors.resource.attributes[2].pattern");
    assert!(e.message.starts_with("invalid regex \"(\""), "{e}");

    let Err(e) = parse("attributes: [{key: a, action: insert, value: 1, valeu: 2}]") else {
        panic!("unknown fields must be rejected");
    };
    assert!(
        e.path.starts_with("processors.resource.attributes[0]"),
        "{e}"
    );
    assert!(e.message.contains("valeu"), "{e}");
}

#[test]
fn the_chart_config_is_accepted() {
    let yaml = "attributes:\n  - key: telemetry.source\n    value: browser\n    action: upsert\n";
    assert!(parse(yaml).is_ok());
}
