#!/usr/bin/env python3
"""Sends a small trace, metrics and log records to an OTLP receiver with the
OpenTelemetry Python SDK, then prints ONE JSON object saying what was sent.

    send_otlp.py --protocol grpc          --endpoint http://127.0.0.1:4317
    send_otlp.py --protocol http/protobuf --endpoint http://127.0.0.1:4318
    send_otlp.py --protocol http/json     --endpoint http://127.0.0.1:4318

`grpc` and `http/protobuf` use the SDK's own OTLP exporters. The SDK has no
OTLP/JSON exporter, so for `http/json` the exporters below encode with the
SDK's own protobuf encoders, convert to OTLP/JSON (`MessageToDict` plus the
spec's deviations: trace and span IDs as hex) and POST with `requests`.

Every exporter is wrapped so that (a) a failed export fails the script (exit
status 1, reason on stderr) and (b) the request as the SDK's encoder built it
is recorded. The output holds those requests as hex-encoded protobuf, so the
caller can compare them field by field with what the collector wrote, plus a
summary of the IDs and values for explicit checks:

    {"protocol": ..., "sent": {"traces": [hex...], "metrics": [...], "logs": [...]},
     "trace_id": hex, "spans": {name: {"span_id", "parent_span_id", "trace_id"}},
     "span_count": n, "metrics": {...expected values...}, "logs": [...]}
"""

import argparse
import base64
import json
import sys
import threading
import time

import requests
from google.protobuf.json_format import MessageToDict

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

# The remote parent of the "enqueue job" span (W3C trace-context example IDs).
REMOTE_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
REMOTE_SPAN_ID = 0x00F067AA0BA902B7

ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class Record:
    """What every exporter sent, and what went wrong."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {"traces": [], "metrics": [], "logs": []}
        self.failures = []

    def add(self, signal, request, ok, detail=""):
        with self.lock:
            self.sent[signal].append(request.SerializeToString().hex())
            if not ok:
                self.failures.append(f"{signal} export failed {detail}".strip())


def succeeded(result):
    return getattr(result, "name", None) == "SUCCESS"


# ---------------------------------------------------------------- OTLP/JSON


def hex_ids(value):
    """OTLP/JSON deviation from the proto3 JSON mapping: IDs are hex, not base64."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ID_FIELDS and isinstance(item, str):
                out[key] = base64.b64decode(item).hex()
            else:
                out[key] = hex_ids(item)
        return out
    if isinstance(value, list):
        return [hex_ids(item) for item in value]
    return value


def to_otlp_json(request):
    return hex_ids(MessageToDict(request, use_integers_for_enums=True))


class JsonPoster:
    """POSTs OTLP/JSON requests and checks the answer."""

    def __init__(self, base, record):
        self.base = base.rstrip("/")
        self.record = record
        self.session = requests.Session()

    def post(self, signal, path, request):
        body = json.dumps(to_otlp_json(request))
        detail = ""
        try:
            response = self.session.post(
                self.base + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
            )
            ok = response.status_code == 200
            if ok:
                answer = response.json()
                if answer.get("partialSuccess"):
                    ok = False
                    detail = f"partial success: {answer}"
            else:
                detail = f"HTTP {response.status_code}: {response.text}"
        except Exception as error:  # noqa: BLE001 -- reported below
            ok = False
            detail = repr(error)
        self.record.add(signal, request, ok, f"POST {path}: {detail}" if detail else "")
        return ok


class JsonSpanExporter(SpanExporter):
    def __init__(self, poster):
        self.poster = poster

    def export(self, spans):
        ok = self.poster.post("traces", "/v1/traces", encode_spans(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


class JsonMetricExporter(MetricExporter):
    def __init__(self, poster):
        super().__init__()
        self.poster = poster

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        ok = self.poster.post("metrics", "/v1/metrics", encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


class JsonLogExporter(LogRecordExporter):
    def __init__(self, poster):
        self.poster = poster

    def export(self, batch):
        ok = self.poster.post("logs", "/v1/logs", encode_logs(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


# ------------------------------------------------- recording the SDK exporters


class RecordingSpanExporter(SpanExporter):
    def __init__(self, inner, record):
        self.inner, self.record = inner, record

    def export(self, spans):
        result = self.inner.export(spans)
        self.record.add("traces", encode_spans(spans), succeeded(result), str(result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class RecordingMetricExporter(MetricExporter):
    def __init__(self, inner, record):
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner, self.record = inner, record

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        self.record.add("metrics", encode_metrics(metrics_data), succeeded(result), str(result))
        return result

    def force_flush(self, timeout_millis=10_000):
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class RecordingLogExporter(LogRecordExporter):
    def __init__(self, inner, record):
        self.inner, self.record = inner, record

    def export(self, batch):
        result = self.inner.export(batch)
        self.record.add("logs", encode_logs(batch), succeeded(result), str(result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def make_exporters(protocol, endpoint, record):
    endpoint = endpoint.rstrip("/")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            RecordingSpanExporter(OTLPSpanExporter(endpoint=endpoint, insecure=True), record),
            RecordingMetricExporter(OTLPMetricExporter(endpoint=endpoint, insecure=True), record),
            RecordingLogExporter(OTLPLogExporter(endpoint=endpoint, insecure=True), record),
        )
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return (
            RecordingSpanExporter(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"), record),
            RecordingMetricExporter(OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"), record),
            RecordingLogExporter(OTLPLogExporter(endpoint=endpoint + "/v1/logs"), record),
        )
    if protocol == "http/json":
        poster = JsonPoster(endpoint, record)
        return JsonSpanExporter(poster), JsonMetricExporter(poster), JsonLogExporter(poster)
    raise SystemExit(f"unknown protocol {protocol}")


# ------------------------------------------------------------- the telemetry


def ids(span):
    ctx = span.get_span_context()
    parent = span.parent.span_id if span.parent is not None else 0
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(parent, "016x") if parent else "",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", required=True, choices=["grpc", "http/protobuf", "http/json"])
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()

    record = Record()
    span_exporter, metric_exporter, log_exporter = make_exporters(args.protocol, args.endpoint, record)

    resource = Resource.create(
        {
            "service.name": "interop-python",
            "service.version": "1.4.2",
            "interop.protocol": args.protocol,
            "interop.int": 42,
            "interop.bool": True,
            "interop.double": 0.25,
            "interop.list": ["a", "b", "c"],
        }
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    metric_reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))

    tracer = tracer_provider.get_tracer(
        "interop.tracer", "2.7.1", schema_url="https://opentelemetry.io/schemas/1.26.0", attributes={"scope.kind": "tracer"}
    )
    meter = meter_provider.get_meter("interop.meter", "3.1.4", schema_url="https://opentelemetry.io/schemas/1.26.0")
    logger = logger_provider.get_logger("interop.logger", "0.9.0")

    requests_counter = meter.create_counter("interop.requests", unit="{request}", description="Requests handled.")
    queue_depth = meter.create_up_down_counter("interop.queue.depth", unit="{item}", description="Items queued.")
    latency = meter.create_histogram("interop.latency", unit="ms", description="Request latency.")
    meter.create_observable_gauge(
        "interop.temperature",
        callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]],
        unit="Cel",
        description="Room temperature.",
    )

    # A span continuing a remote parent that carries a trace state: the link target.
    remote = SpanContext(
        trace_id=REMOTE_TRACE_ID,
        span_id=REMOTE_SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1"), ("other", "x-y")]),
    )
    with tracer.start_as_current_span(
        "enqueue job", context=trace.set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.PRODUCER
    ) as producer:
        producer.set_attribute("messaging.system", "kafka")

    root_attributes = {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "interop.negative": -7,
        "interop.big": 2**62 + 1,
        "interop.ratio": 0.1 + 0.2,
        "interop.sampled": True,
        "interop.unicode": "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c",
        "interop.strings": ["a", "b"],
        "interop.ints": [1, 2, 3],
        "interop.doubles": [1.5, -2.25],
        "interop.bools": [True, False],
    }
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER, attributes=root_attributes) as root:
        root.add_event(
            "request.received",
            {"size": 512, "gzip": False, "ratio": 0.5, "client": "curl", "tags": ["x", "y"]},
        )
        with tracer.start_as_current_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            links=[Link(producer.get_span_context(), {"link.kind": "follows_from", "link.n": 3})],
            attributes={"db.system.name": "postgresql"},
        ) as client:
            client.add_event("rows.fetched", {"rows": 17})
            requests_counter.add(3, {"route": "/checkout"})
            latency.record(5.0, {"route": "/checkout"})
        with tracer.start_as_current_span("charge card", kind=SpanKind.INTERNAL) as failing:
            failing.record_exception(ValueError("card expired"))
            failing.set_status(Status(StatusCode.ERROR, "payment declined"))
            logger.emit(
                timestamp=time.time_ns(),
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body="payment declined for order 1234",
                attributes={"order.id": 1234, "retryable": False, "amount": 99.95, "tags": ["card", "eu"]},
            )
        requests_counter.add(4, {"route": "/cart"})
        latency.record(12.5, {"route": "/checkout"})
        latency.record(250.0, {"route": "/checkout"})
        queue_depth.add(10)
        queue_depth.add(-3)
    logger.emit(
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body={"event": "checkout", "items": 3, "nested": {"list": [1, "two", 3.5, True]}},
        event_name="checkout.completed",
    )

    flushed = all(
        [
            tracer_provider.force_flush(30_000),
            meter_provider.force_flush(30_000),
            logger_provider.force_flush(30_000),
        ]
    )
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()

    if not flushed:
        record.failures.append("force_flush timed out")
    if record.failures:
        print("\n".join(record.failures), file=sys.stderr)
        return 1

    summary = {
        "protocol": args.protocol,
        "sent": record.sent,
        "trace_id": ids(root)["trace_id"],
        "spans": {span.name: ids(span) for span in (producer, root, client, failing)},
        "span_count": 4,
        "scope": {"name": "interop.tracer", "version": "2.7.1"},
        "resource": {"service.name": "interop-python", "service.version": "1.4.2"},
        "metrics": {
            "interop.requests": {"type": "sum", "monotonic": True, "by_route": {"/checkout": 3, "/cart": 4}},
            "interop.queue.depth": {"type": "sum", "monotonic": False, "value": 7},
            "interop.latency": {"type": "histogram", "count": 3, "sum": 267.5, "min": 5.0, "max": 250.0},
            "interop.temperature": {"type": "gauge", "value": 21.5},
        },
        "logs": [
            {
                "body": "payment declined for order 1234",
                "severity_number": int(SeverityNumber.WARN.value),
                "severity_text": "WARN",
                "trace_id": ids(failing)["trace_id"],
                "span_id": ids(failing)["span_id"],
            },
            {"body_event": "checkout", "severity_number": int(SeverityNumber.INFO.value), "event_name": "checkout.completed"},
        ],
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
