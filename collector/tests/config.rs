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
        tls: {cert_file: /certs/server.pem, key_file: /certs/server-key.pem, client_ca_file: /certs/ca.pem, client_ca_file_reload: true, min_version: "1.2", max_version: "1.3", reload_interval: 1h}
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
        tls: {cert_pem: "-----BEGIN CERTIFICATE-----", key_pem: "-----BEGIN PRIVATE KEY-----", ca_file: /certs/ignored.pem, cipher_suites: [TLS_AES_128_GCM_SHA256], curve_preferences: [X25519]}
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
  tail_sampling:
    decision_wait: 10s
    decision_wait_after_root_received: 2s
    num_traces: 50000
    expected_new_traces_per_sec: 100
    decision_cache: {sampled_cache_size: 10000, non_sampled_cache_size: 20000}
    sample_on_first_match: true
    drop_pending_traces_on_shutdown: false
    maximum_trace_size_bytes: 1048576
    block_on_overflow: false
    sampling_strategy: trace-complete
    max_memory_mib: 256
    num_shards: 4
    record_policy: true
    policies:
      - {name: all, type: always_sample}
      - {name: slow, type: latency, latency: {threshold_ms: 500, upper_threshold_ms: 10000}}
      - {name: server-errors, type: numeric_attribute, numeric_attribute: {key: http.response.status_code, min_value: 500, max_value: 599, invert_match: false}}
      - {name: some, type: probabilistic, probabilistic: {hash_salt: my-salt, sampling_percentage: 12.5}}
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR, OK, UNSET]}}
      - {name: api, type: string_attribute, string_attribute: {key: http.route, values: ["/api/.*"], enabled_regex_matching: true, cache_max_size: 256, invert_match: false}}
      - {name: vendor, type: trace_state, trace_state: {key: vendor, values: [v1, v2]}}
      - {name: flagged, type: trace_flags}
      - {name: spans, type: rate_limiting, rate_limiting: {spans_per_second: 1000, burst_capacity: 2000}}
      - {name: bytes, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1048576, burst_capacity: 2097152}}
      - {name: mid-size, type: span_count, span_count: {min_spans: 2, max_spans: 100}}
      - {name: important, type: boolean_attribute, boolean_attribute: {key: important, value: true, invert_match: false}}
      - name: slow-checkout
        type: and
        and:
          and_sub_policy:
            - {name: checkout, type: string_attribute, string_attribute: {key: service.name, values: [checkout]}}
            - {name: slow, type: latency, latency: {threshold_ms: 1000}}
      - {name: not-ok, type: not, not: {not_sub_policy: {name: ok, type: status_code, status_code: {status_codes: [OK]}}}}
      - {name: no-health, type: drop, drop: {drop_sub_policy: [{name: health, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}]}}
      - name: budget
        type: composite
        composite:
          max_total_spans_per_second: 1000
          policy_order: [budget-errors, budget-rest]
          composite_sub_policy:
            - {name: budget-errors, type: status_code, status_code: {status_codes: [ERROR]}}
            - {name: budget-rest, type: always_sample}
          rate_allocation:
            - {policy: budget-errors, percent: 75}
            - {policy: budget-rest, percent: 25}
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
  otlp/persistent:
    endpoint: gateway:4317
    tls: {ca_file: /certs/ca.pem, cert_file: /certs/client.pem, key_file: /certs/client-key.pem, server_name_override: gateway}
    sending_queue: {storage: file_storage/queue, queue_size: 5000, sizer: items}
  otlphttp/full:
    endpoint: https://gateway:4318
    traces_endpoint: https://traces:4318/v1/traces
    metrics_endpoint: https://metrics:4318/v1/metrics
    logs_endpoint: https://logs:4318/v1/logs
    encoding: json
    compression: zstd
    compression_params: {level: 3}
    headers: {x-tenant: acme}
    tls: {ca_file: /certs/ca.pem, insecure_skip_verify: false, min_version: "1.2"}
    timeout: 10s
    read_buffer_size: 4096
    write_buffer_size: 4096
    max_idle_conns: 100
    max_idle_conns_per_host: 10
    max_conns_per_host: 10
    idle_conn_timeout: 90s
    disable_keep_alives: false
    http2_read_idle_timeout: 10s
    http2_ping_timeout: 5s
    retry_on_failure: {initial_interval: 1s, max_elapsed_time: 0s}
    sending_queue: {storage: file_storage/queue}
  otlp_http/alias:
    endpoint: http://gateway:4318
  loadbalancing/gateway:
    routing_key: traceID
    resolver:
      dns:
        hostname: gateway-collector-headless.otel-system.svc.cluster.local
        port: '4317'
        interval: 5s
        timeout: 1s
    protocol:
      otlp:
        tls: {insecure: true}
        compression: gzip
        timeout: 5s
        headers: {x-tenant: acme}
        keepalive: {time: 30s, timeout: 5s}
        retry_on_failure: {enabled: true, initial_interval: 1s, max_interval: 10s, max_elapsed_time: 1m}
        sending_queue: {enabled: true, num_consumers: 4, queue_size: 500, sizer: requests}
    timeout: 10s
    retry_on_failure: {enabled: true, initial_interval: 1s, max_interval: 5s, max_elapsed_time: 5m}
    sending_queue: {enabled: true, queue_size: 50000, sizer: items, block_on_overflow: true}
  loadbalancing/static:
    routing_key: attributes
    routing_attributes: [http.route, span.kind]
    resolver:
      static:
        hostnames: [gw-0.gw:4317, gw-1.gw:4317, gw-2.gw]
    protocol:
      otlp:
        tls: {insecure: true}
  loadbalancing/streams:
    routing_key: streamID
    resolver: {dns: {hostname: gw.example.com, port: 4317}}
  load_balancing/alias:
    routing_key: service
    resolver: {static: {hostnames: ["[::1]:4317"]}}
  loadbalancing/k8s:
    resolver:
      k8s:
        service: lb-svc.kube-public
        ports: [15317, 16317]
        timeout: 2s
        return_hostnames: true
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
    path: /health
  file_storage/queue:
    directory: /var/lib/otelcol/queue
    timeout: 2s
    fsync: true
    create_directory: true
    directory_permissions: "0700"
    compaction: {on_start: true, on_rebound: true, directory: /tmp, max_transaction_size: 65536, rebound_needed_threshold_mib: 100, rebound_trigger_threshold_mib: 10, check_interval: 5s, cleanup_on_start: true}
service:
  extensions: [health_check, file_storage/queue]
  telemetry:
    logs: {level: debug, encoding: json}
    metrics:
      level: detailed
      readers:
        - pull: {exporter: {prometheus: {host: 0.0.0.0, port: 8888}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, tail_sampling, resource, batch]
      exporters: [otlp/to, debug, file, file/appending]
    traces/second:
      receivers: [otlp, otlp/http_only]
      processors: [memory_limiter/pct, batch/empty]
      exporters: [otlp_grpc/alias, otlp/persistent, otlphttp/full, otlp_http/alias]
    traces/balanced:
      receivers: [otlp]
      exporters: [loadbalancing/gateway, loadbalancing/static, load_balancing/alias, loadbalancing/k8s]
    metrics/balanced:
      receivers: [otlp]
      exporters: [loadbalancing/gateway, loadbalancing/streams]
    logs/balanced:
      receivers: [otlp]
      exporters: [loadbalancing/gateway]
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
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {k8s: {ports: [4317]}}}}",
        "exporters.loadbalancing.resolver.k8s.service",
        "must be set",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {static: {hostnames: [a:4317]}, dns: {hostname: b}}}}",
        "exporters.loadbalancing.resolver",
        "only one resolver",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {protocol: {otlp: {}}}}",
        "exporters.loadbalancing.resolver",
        "no resolver configured",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {dns: {hostname: gw, port: grpc}}}}",
        "exporters.loadbalancing.resolver.dns.port",
        "not a port number",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {routing_key: traceid, resolver: {dns: {hostname: gw}}}}",
        "exporters.loadbalancing.routing_key",
        "unknown variant `traceid`",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {routing_key: attributes, resolver: {dns: {hostname: gw}}}}",
        "exporters.loadbalancing.routing_attributes",
        "at least one attribute",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {aws_cloud_map: {namespace: ns, service_name: gw}}}}",
        "exporters.loadbalancing.resolver.aws_cloud_map",
        "not supported",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {dns: {hostname: gw}}, protocol: {otlp: {endpont: gw:4317}}}}",
        "exporters.loadbalancing.protocol.otlp.endpont",
        "unknown field `endpont`",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , loadbalancing: {resolver: {static: {hostnames: [gw:4317, 'gw:port']}}}}",
        "exporters.loadbalancing.resolver.static.hostnames[1]",
        "host:port",
    ),
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
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {attributes: {}}",
        "processors.attributes",
        "unknown processor type \"attributes\"; this collector supports: batch, memory_limiter, resource, tail_sampling",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: http, type: string_attribute, string_attribute: {key: http.status_code, values: ['4[0-9]{2}', '5[0-9'], enabled_regex_matching: true}}]}}",
        "processors.tail_sampling.policies[1].string_attribute.values[1]",
        "regex",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {policies: [{name: e, type: status_code, status_code: {status_codes: [ERROR, FAILED]}}]}}",
        "processors.tail_sampling.policies[0].status_code.status_codes[1]",
        "unknown status code \"FAILED\"; expected one of OK, ERROR, UNSET",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {policies: [{name: e, type: status_code, status_code: {status_code: [ERROR]}}]}}",
        "processors.tail_sampling.policies[0].status_code.status_code",
        "unknown field `status_code`",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {policies: [{name: o, type: ottl_condition, ottl_condition: {span: ['true']}}]}}",
        "processors.tail_sampling.policies[0].type",
        "not supported",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {decision_wait: 10x, policies: [{name: a, type: always_sample}]}}",
        "processors.tail_sampling.decision_wait",
        "10x",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {num_shards: -2, policies: [{name: a, type: always_sample}]}}",
        "processors.tail_sampling.num_shards",
        "expected a number of shards",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nprocessors: {tail_sampling: {policies: [{name: a, type: always_sample}, {name: b, type: and, and: {and_sub_policy: [{name: c, type: numeric_attribute, numeric_attribute: {key: ''}}]}}]}}",
        "processors.tail_sampling.policies[1].and.and_sub_policy[0].numeric_attribute.key",
        "",
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
    (
        "receivers: {otlp: {protocols: {grpc: {tls: {key_file: /k.pem}}}}}\nexporters: {debug: }",
        "receivers.otlp.protocols.grpc.tls.cert_file",
        "needs a certificate",
    ),
    (
        "receivers: {otlp: {protocols: {http: {tls: {cert_file: /c.pem, key_file: /k.pem, min_version: '1.1'}}}}}\nexporters: {debug: }",
        "receivers.otlp.protocols.http.tls.min_version",
        "TLS 1.2 and 1.3 only",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , otlphttp: {}}",
        "exporters.otlphttp.endpoint",
        "must be set",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , otlp_http: {endpoint: 'http://gw:4318', compression: brotli}}",
        "exporters.otlp_http.compression",
        "unknown compression",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , otlphttp: {endpoint: 'gw:4318'}}",
        "exporters.otlphttp.endpoint",
        "must start with http:// or https://",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: , otlp: {endpoint: 'gw:4317', sending_queue: {storage: file_storage, enabled: false}}}",
        "exporters.otlp.sending_queue.storage",
        "needs the sending queue",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nextensions: {file_storage: {directry: /var/lib/q}}",
        "extensions.file_storage.directry",
        "unknown field `directry`",
    ),
    (
        "receivers: {otlp: {protocols: {grpc: }}}\nexporters: {debug: }\nextensions: {file_storage: {directory_permissions: rwx}}",
        "extensions.file_storage.directory_permissions",
        "octal",
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
