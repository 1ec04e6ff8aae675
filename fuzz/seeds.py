"""Writes the committed seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*).

Run from the repository root with the project's Python (`cargo xtask env` gives
OLLY_PYTHON; the venv has opentelemetry-proto and opentelemetry-opamp-client):
    $OLLY_PYTHON fuzz/seeds.py
The inputs are the shapes the tests send: a few spans with attributes and
events, a gauge and a histogram, log records, the original chart's configs,
an OpAMP reply carrying a remote config. Each seed is small on purpose.
"""

import os
import pathlib

from opentelemetry._opamp.proto import opamp_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

ROOT = pathlib.Path(__file__).resolve().parent
NOW = 1_800_000_000_000_000_000


def kv(key, value):
    if isinstance(value, bool):
        any_value = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = common_pb2.AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = common_pb2.AnyValue(double_value=value)
    elif isinstance(value, list):
        any_value = common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=[kv("", v).value for v in value])
        )
    else:
        any_value = common_pb2.AnyValue(string_value=value)
    return common_pb2.KeyValue(key=key, value=any_value)


def resource(service):
    return resource_pb2.Resource(attributes=[kv("service.name", service), kv("telemetry.source", "browser")])


def traces(invalid_ids=False):
    spans = []
    for i in range(3):
        span = trace_pb2.Span(
            trace_id=bytes([1] * 16) if not invalid_ids else b"\x00" * 16,
            span_id=bytes([i + 1] * 8),
            parent_span_id=b"" if i == 0 else bytes([1] * 8),
            name=f"GET /api/{i}",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=NOW,
            end_time_unix_nano=NOW + 1000,
            attributes=[kv("http.method", "GET"), kv("http.status_code", 200 + i), kv("tags", ["a", "b"])],
            events=[trace_pb2.Span.Event(time_unix_nano=NOW, name="exception", attributes=[kv("exception.message", "boom")])],
            links=[trace_pb2.Span.Link(trace_id=bytes([2] * 16), span_id=bytes([3] * 8))],
            status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if i == 2 else 0),
        )
        spans.append(span)
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource("web"),
                scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="fetch", version="1"), spans=spans)],
            )
        ]
    )


def metrics():
    gauge = metrics_pb2.Metric(
        name="web_vitals.lcp",
        unit="ms",
        gauge=metrics_pb2.Gauge(data_points=[metrics_pb2.NumberDataPoint(time_unix_nano=NOW, as_double=1234.5, attributes=[kv("page", "/")])]),
    )
    histogram = metrics_pb2.Metric(
        name="http.server.duration",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    time_unix_nano=NOW, count=3, sum=7.5, bucket_counts=[1, 2, 0], explicit_bounds=[1.0, 5.0]
                )
            ],
        ),
    )
    total = metrics_pb2.Metric(
        name="requests",
        sum=metrics_pb2.Sum(is_monotonic=True, data_points=[metrics_pb2.NumberDataPoint(time_unix_nano=NOW, as_int=42)]),
    )
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource("web"),
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[gauge, histogram, total])],
            )
        ]
    )


def logs():
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=NOW,
            severity_number=logs_pb2.SEVERITY_NUMBER_ERROR,
            severity_text="ERROR",
            body=common_pb2.AnyValue(string_value="checkout failed"),
            attributes=[kv("cart.items", 3)],
            trace_id=bytes([1] * 16),
            span_id=bytes([2] * 8),
        ),
        logs_pb2.LogRecord(observed_time_unix_nano=NOW, body=common_pb2.AnyValue(string_value="no context")),
    ]
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(resource=resource("web"), scope_logs=[logs_pb2.ScopeLogs(log_records=records)])]
    )


TRACES_JSON = b"""{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
"scopeSpans":[{"scope":{"name":"@opentelemetry/sdk-trace-web"},"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",
"spanId":"0102030405060708","parentSpanId":"","name":"documentLoad","kind":1,"startTimeUnixNano":"1800000000000000000",
"endTimeUnixNano":"1800000000100000000","attributes":[{"key":"http.url","value":{"stringValue":"http://127.0.0.1/"}},
{"key":"n","value":{"intValue":"3"}},{"key":"d","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}},
{"key":"l","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}}],"events":[{"timeUnixNano":"1800000000000000000",
"name":"exception","attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}]}],"status":{"code":2}}]}]}]}"""

METRICS_JSON = b"""{"resourceMetrics":[{"resource":{"attributes":[]},"scopeMetrics":[{"metrics":[{"name":"lcp","unit":"ms",
"gauge":{"dataPoints":[{"timeUnixNano":"1800000000000000000","asDouble":1234.5}]}},{"name":"requests","sum":{"isMonotonic":true,
"aggregationTemporality":2,"dataPoints":[{"asInt":"42"}]}},{"name":"h","histogram":{"aggregationTemporality":1,
"dataPoints":[{"count":"3","sum":7.5,"bucketCounts":["1","2","0"],"explicitBounds":[1,5]}]}}]}]}]}"""

LOGS_JSON = b"""{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
"scopeLogs":[{"logRecords":[{"timeUnixNano":"1800000000000000000","severityNumber":17,"severityText":"ERROR",
"body":{"stringValue":"checkout failed"},"attributes":[{"key":"cart.items","value":{"intValue":"3"}}],
"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}]}]}"""

SET_SEED = b"""
---set---
processors.batch.timeout=2s
exporters.otlp.endpoint=${env:HOST}:${env:PORT}
service.pipelines.traces.processors=[batch]
"""


def frame(message):
    return b"\x00" + message.SerializeToString()


def opamp_seeds(repo):
    config = (repo / "collector/tests/data/original-gateway.yaml").read_bytes()
    remote = opamp_pb2.ServerToAgent(
        instance_uid=bytes(range(16)),
        remote_config=opamp_pb2.AgentRemoteConfig(
            config=opamp_pb2.AgentConfigMap(config_map={"": opamp_pb2.AgentConfigFile(body=config, content_type="text/yaml")}),
            config_hash=b"\x01" * 32,
        ),
    )
    heartbeat = opamp_pb2.ServerToAgent(
        instance_uid=bytes(range(16)),
        flags=opamp_pb2.ServerToAgentFlags_ReportFullState,
        connection_settings=opamp_pb2.ConnectionSettingsOffers(opamp=opamp_pb2.OpAMPConnectionSettings(heartbeat_interval_seconds=5)),
    )
    error = opamp_pb2.ServerToAgent(
        error_response=opamp_pb2.ServerErrorResponse(
            type=opamp_pb2.ServerErrorResponseType_Unavailable,
            error_message="busy",
            retry_info=opamp_pb2.RetryInfo(retry_after_nanoseconds=1_000_000_000),
        )
    )
    return {"remote-config": frame(remote), "full-state": frame(heartbeat), "error": frame(error)}


HTTP_EXCHANGE = (
    b"\x10\x00\x01\x00\x03\x00\x20\x00\x01\x01\x60\x00"
    b"POST /v1/orders?id=7 HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello"
    b"\x10\x00\x01\x02\x40\x00"
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


def main():
    repo = ROOT.parent
    protobuf = {"traces": traces(), "traces-invalid-ids": traces(True), "metrics": metrics(), "logs": logs()}
    selector = {"traces": 0, "traces-invalid-ids": 0, "metrics": 1, "logs": 2}
    configs = {name: (repo / f"collector/tests/data/original-{name}.yaml").read_bytes() for name in ["agent", "gateway", "browser"]}
    corpora = {
        "otlp_protobuf": {name: bytes([selector[name]]) + m.SerializeToString() for name, m in protobuf.items()},
        "otlp_json": {"traces": b"\x00" + TRACES_JSON, "metrics": b"\x01" + METRICS_JSON, "logs": b"\x02" + LOGS_JSON},
        "config_loader": {**configs, "gateway-with-sets": configs["gateway"] + SET_SEED},
        "opamp_message": opamp_seeds(repo),
        "file_storage_record": {
            "framed-traces": b"\x01" + protobuf["traces"].SerializeToString(),
            "framed-logs": bytes([1 | (2 << 1)]) + protobuf["logs"].SerializeToString(),
            "raw-header": b"\x00OSV1" + b"\x00" * 12,
        },
        # Mode 0 reads a script of events (the HTTP text lands in captured
        # bytes); mode 1 generates exchanges from any bytes.
        "ebpf_http": {
            "script-http": b"\x00" + HTTP_EXCHANGE,
            "exchanges": b"\x01" + bytes(range(256)),
        },
    }
    for target, seeds in corpora.items():
        directory = ROOT / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (directory / f"seed-{name}").write_bytes(data)
    print(f"wrote seeds for {len(corpora)} targets under {ROOT / 'corpus'}")


if __name__ == "__main__":
    os.chdir(pathlib.Path(__file__).resolve().parent.parent)
    main()
