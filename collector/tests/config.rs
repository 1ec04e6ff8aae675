//! Config loading and validation against the real component list: every
//! otelcol key we implement parses, and bad configs fail with the exact YAML
//! path and a message that says what was expected.

use collector_core::config::{Config, ConfigErrors, load};
use collector_core::pipeline;

fn check(yaml: &str) -> Result<(), ConfigErrors> {
    let factories = collector::components::all().expect("components");
    let value = load::load_sources(
        &[load::ConfigSource::Text {
            label: "test".into(),
            yaml: yaml.into(),
        }],
        &[],
        &|name| (name == "TEST_PORT").then(|| "4317".to_string()),
    )?;
    let config = Config::from_value(value)?;
    pipeline::plan(&config, &factories).map(|_| ())
}

const PIPELINE: &str = r#"
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#;

fn with_pipeline(components: &str) -> String {
    format!("{components}\n{PIPELINE}")
}

#[test]
fn kitchen_sink_config_with_every_supported_key_is_valid() {
    let yaml = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${env:TEST_PORT}
        transport: tcp
        max_recv_msg_size_mib: 8
        max_concurrent_streams: 100
        read_buffer_size: 524288
        write_buffer_size: 524288
        include_metadata: true
        keepalive:
          server_parameters: {time: 30s, timeout: 5s, max_connection_idle: 1m, max_connection_age: 1h, max_connection_age_grace: 10s}
          enforcement_policy: {min_time: 10s, permit_without_stream: true}
      http:
        endpoint: 127.0.0.1:4318
        traces_url_path: /v1/traces
        metrics_url_path: /v1/metrics
        logs_url_path: /v1/logs
        max_request_body_size: 10485760
        include_metadata: true
        compression_algorithms: [gzip, zstd, deflate, snappy, lz4]
        response_headers: {X-Served-By: ollyscale}
        cors:
          allowed_origins: ["https://*.example.com", "http://localhost:3000"]
          allowed_headers: [X-Custom]
          exposed_headers: [X-Served-By]
          max_age: 7200
  otlp/http_only:
    protocols:
      http:
processors:
  batch:
    timeout: 200ms
    send_batch_size: 8192
    send_batch_max_size: 10000
    metadata_keys: [x-tenant]
    metadata_cardinality_limit: 100
  batch/empty:
  memory_limiter:
    check_interval: 1s
    limit_mib: 512
    spike_limit_mib: 128
  memory_limiter/pct:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  resource:
    attributes:
      - {key: telemetry.source, value: browser, action: upsert}
      - {key: env, value: prod, action: insert}
      - {key: region, value: eu, action: update}
      - {key: secret, action: delete}
      - {pattern: "^tmp\\..*", action: delete}
      - {key: user.email, action: hash}
      - {key: k8s.pod.name, pattern: "^(?P<app>[a-z]+)-(?P<hash>[a-z0-9]+)$", action: extract}
      - {key: http.status_code, action: convert, converted_type: int}
      - {key: copied, from_attribute: service.name, action: upsert}
      - {key: tenant, from_context: metadata.x-tenant, action: insert}
exporters:
  debug:
    verbosity: detailed
    sampling_initial: 5
    sampling_thereafter: 200
  file:
    path: /tmp/out.json
    format: json
    flush_interval: 1s
    rotation: {max_megabytes: 10, max_days: 3, max_backups: 3, localtime: true}
  file/appending:
    path: /tmp/out.pb
    format: proto
    append: true
  otlp/to:
    endpoint: gateway:4317
    tls: {insecure: true}
    headers: {x-tenant: acme}
    compression: zstd
    timeout: 10s
    retry_on_failure: {enabled: true, initial_interval: 1s, max_interval: 10s, max_elapsed_time: 1m, multiplier: 2}
    sending_queue: {enabled: true, num_consumers: 4, queue_size: 500, block_on_overflow: false}
  otlp_grpc/alias:
    endpoint: gateway:4317
    tls: {insecure: true}
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
    path: /health
service:
  extensions: [health_check]
  telemetry:
    logs: {level: debug, encoding: json}
    metrics:
      level: detailed
      readers:
        - pull: {exporter: {prometheus: {host: 0.0.0.0, port: 8888}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlp/to, debug, file, file/appending]
    traces/second:
      receivers: [otlp, otlp/http_only]
      processors: [memory_limiter/pct, batch/empty]
      exporters: [otlp_grpc/alias]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
    logs:
      receivers: [otlp]
      exporters: [file]
"#;
    if let Err(e) = check(yaml) {
        panic!("{e}");
    }
}

#[test]
fn old_metrics_address_form_is_accepted() {
    let yaml = with_pipeline("receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\n")
        + "  telemetry:\n    metrics:\n      address: 0.0.0.0:8888\n";
    check(&yaml).unwrap_or_else(|e| panic!("{e}"));
}

/// (config, expected path, expected words in the message)
const BAD: &[(&str, &str, &str)] = &[
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , file: {path: /tmp/x, append: true, rotation: {max_megabytes: 1}}}",
        "exporters.file.append",
        "append and rotation enabled at the same time is not supported",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}, foo: }\nexporters: {debug: }",
        "receivers.foo",
        "unknown receiver type \"foo\"; this collector supports: otlp",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {}}",
        "processors.tail_sampling",
        "unknown processor type \"tail_sampling\"; this collector supports: batch, memory_limiter, resource",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: {endpont: 0.0.0.0:4317}}}}\nexporters: {debug: }",
        "receivers.otlp.protocols.grpc.endpont",
        "unknown field `endpont`, expected one of `endpoint`",
    ),
    (
        "receivers: {otlp: {protocols: {}}}\nexporters: {debug: }",
        "receivers.otlp.protocols",
        "must specify at least one protocol",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {batch: {timeout: 5x}}",
        "processors.batch.timeout",
        "invalid duration \"5x\"",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {batch: {send_batch_size: 100, send_batch_max_size: 50}}",
        "processors.batch.send_batch_max_size",
        "send_batch_size",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {resource: {attributes: [{key: a, value: b, action: upsert}, {pattern: '(', action: delete}]}}",
        "processors.resource.attributes[1].pattern",
        "regex",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {resource: {attributes: [{key: a, value: b, action: smash}]}}",
        "processors.resource.attributes[0].action",
        "insert",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {memory_limiter: {limit_mib: 100}}",
        "processors.memory_limiter.check_interval",
        "",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: {verbosity: loud}}",
        "exporters.debug.verbosity",
        "unknown variant `loud`",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nrecievers: {}",
        "recievers",
        "unknown top-level key",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nconnectors: {forward: }",
        "connectors",
        "not supported",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nextensions: {health_check: {path: health}}",
        "extensions.health_check.path",
        "must start with '/'",
    ),
];

#[test]
fn bad_component_configs_name_the_path_and_the_expectation() {
    for (components, path, words) in BAD {
        let yaml = with_pipeline(components);
        let errors = match check(&yaml) {
            Ok(()) => panic!("accepted:\n{yaml}"),
            Err(e) => e,
        };
        let found = errors.0.iter().find(|e| e.path == *path);
        let Some(error) = found else {
            panic!("no error at {path}; got: {errors}")
        };
        assert!(
            error.message.contains(words),
            "{path}: {:?} lacks {words:?}",
            error.message
        );
    }
}

/// (service section, expected path, expected words)
const BAD_SERVICE: &[(&str, &str, &str)] = &[
    (
        "service:\n  pipelines: {}",
        "service.pipelines",
        "at least one pipeline",
    ),
    (
        "service:\n  pipelines:\n    traces: {exporters: [debug]}",
        "service.pipelines.traces.receivers",
        "must have at least one receiver",
    ),
    (
        "service:\n  pipelines:\n    traces: {receivers: [otlp]}",
        "service.pipelines.traces.exporters",
        "must have at least one exporter",
    ),
    (
        "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlp/missing]}",
        "service.pipelines.traces.exporters[0]",
        "references exporter \"otlp/missing\" which is not configured under exporters",
    ),
    (
        "service:\n  pipelines:\n    traces: {receivers: [otlp], processors: [batch, batch], exporters: [debug]}",
        "service.pipelines.traces.processors[1]",
        "more than once",
    ),
    (
        "service:\n  pipelines:\n    traces/x: {receivers: [otlp], processors: [resource], exporters: [debug]}",
        "service.pipelines.traces/x.processors[0]",
        "references processor \"resource\" which is not configured under processors",
    ),
    (
        "service:\n  extensions: [health_check]\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}",
        "service.extensions[0]",
        "references extension \"health_check\" which is not configured",
    ),
    (
        "service:\n  pipelines:\n    spans: {receivers: [otlp], exporters: [debug]}",
        "service.pipelines",
        "traces, metrics or logs",
    ),
    (
        "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n  telemetry:\n    logs: {level: chatty}",
        "service.telemetry.logs.level",
        "unknown variant `chatty`",
    ),
];

#[test]
fn bad_service_sections_name_the_path_and_the_expectation() {
    for (service, path, words) in BAD_SERVICE {
        let yaml = format!(
            "receivers: {{otlp: {{protocols: {{grpc: }}}}}}\nprocessors: {{batch: }}\nexporters: {{debug: }}\n{service}\n"
        );
        let errors = match check(&yaml) {
            Ok(()) => panic!("accepted:\n{yaml}"),
            Err(e) => e,
        };
        let found = errors.0.iter().find(|e| e.path.starts_with(path));
        let Some(error) = found else {
            panic!("no error at {path}; got: {errors}")
        };
        assert!(
            error.message.contains(words),
            "{path}: {:?} lacks {words:?}",
            error.message
        );
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let yaml = "receivers: {otlp: {protocols: {}}, nope: }\nexporters: {debug: {verbosity: loud}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlp/x]}\n";
    let errors = check(yaml).expect_err("invalid");
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "receivers.otlp.protocols",
        "receivers.nope",
        "exporters.debug.verbosity",
        "service.pipelines.traces.exporters[0]",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}

#[test]
fn environment_references_with_unknown_providers_are_errors() {
    let yaml = with_pipeline(
        "receivers: {otlp: {protocols: {grpc: {endpoint: '${file:/etc/x}'}}}}\nexporters: {debug: }",
    );
    let errors = check(&yaml).expect_err("invalid");
    assert_eq!(errors.0[0].path, "receivers.otlp.protocols.grpc.endpoint");
    assert!(
        errors.0[0]
            .message
            .contains("unsupported config provider \"file\""),
        "{errors}"
    );
}

#[test]
fn embedded_role_defaults_are_valid() {
    use collector::role::Role;
    for role in [Role::Agent, Role::Gateway, Role::Browser] {
        if let Err(e) = check(role.default_config()) {
            panic!("{}: {e}", role.binary());
        }
    }
}
