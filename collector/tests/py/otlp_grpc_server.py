#!/usr/bin/env python3
"""An independent OTLP server for interop tests: gRPC (grpcio, the services
generated in the `opentelemetry-proto` package) and OTLP/HTTP (`http.server`,
protobuf parsed with the same package's classes, JSON read with `json`).

    otlp_grpc_server.py --summary PATH [--grpc-unavailable-first N]
                        [--http-unavailable-first N]

It listens on 127.0.0.1 on ports the OS picks and prints ONE JSON line to
stdout: {"grpc_port": n, "http_port": n}. Every request is checked as OTLP
(it must decode; trace IDs 16 bytes, span IDs 8 bytes; JSON IDs hex); a
request that fails a check is refused (gRPC INVALID_ARGUMENT / HTTP 400) and
recorded under "errors". The first N requests of a protocol can be answered
UNAVAILABLE (gRPC) / 503 with `Retry-After: 1` (HTTP) to exercise retries.

After every request, and on SIGTERM, it writes a JSON summary to PATH
(written to a temporary file and renamed, so a reader never sees half):

    {"traces": {"requests": n, "spans": n, "trace_ids": [hex...], "span_ids": [hex...]},
     "metrics": {"requests": n, "data_points": n, "names": [...]},
     "logs": {"requests": n, "log_records": n, "bodies": [...]},
     "refused_unavailable": {"grpc": n, "http": n},
     "max_request_bytes": n, "content_types": [...], "content_encodings": [...],
     "errors": [text...]}
"""

import argparse
import gzip
import json
import os
import signal
import sys
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

# grpc-python's default, as the OllyScale receiver runs it.
MAX_GRPC_MESSAGE = 4 * 1024 * 1024


class InvalidOtlp(Exception):
    pass


class Summary:
    def __init__(self, path, grpc_unavailable, http_unavailable):
        self.path = path
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.unavailable_left = {"grpc": grpc_unavailable, "http": http_unavailable}
        self.data = {
            "traces": {"requests": 0, "spans": 0, "trace_ids": [], "span_ids": []},
            "metrics": {"requests": 0, "data_points": 0, "names": []},
            "logs": {"requests": 0, "log_records": 0, "bodies": []},
            "refused_unavailable": {"grpc": 0, "http": 0},
            "max_request_bytes": 0,
            "content_types": [],
            "content_encodings": [],
            "errors": [],
        }

    def take_unavailable(self, protocol):
        with self.lock:
            if self.unavailable_left[protocol] > 0:
                self.unavailable_left[protocol] -= 1
                self.data["refused_unavailable"][protocol] += 1
                refuse = True
            else:
                refuse = False
        if refuse:
            self.write()
        return refuse

    def note(self, key, value):
        with self.lock:
            if value not in self.data[key]:
                self.data[key].append(value)

    def size(self, n):
        with self.lock:
            self.data["max_request_bytes"] = max(self.data["max_request_bytes"], n)

    def error(self, text):
        with self.lock:
            self.data["errors"].append(text)
        self.write()

    def add_traces(self, spans):
        with self.lock:
            t = self.data["traces"]
            t["requests"] += 1
            t["spans"] += len(spans)
            seen = set(t["trace_ids"])
            for trace_id, span_id in spans:
                if trace_id not in seen:
                    seen.add(trace_id)
                    t["trace_ids"].append(trace_id)
                t["span_ids"].append(span_id)
        self.write()

    def add_metrics(self, names, points):
        with self.lock:
            m = self.data["metrics"]
            m["requests"] += 1
            m["data_points"] += points
            for name in names:
                if name not in m["names"]:
                    m["names"].append(name)
        self.write()

    def add_logs(self, bodies):
        with self.lock:
            logs = self.data["logs"]
            logs["requests"] += 1
            logs["log_records"] += len(bodies)
            logs["bodies"].extend(bodies)
        self.write()

    def write(self):
        # One writer at a time: each writes the latest state in full.
        with self.write_lock:
            with self.lock:
                text = json.dumps(self.data)
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)


# ---- checks on decoded protobuf messages ----

def check_id(value, size, what):
    if len(value) != size:
        raise InvalidOtlp(f"{what} has {len(value)} bytes, expected {size}")


def spans_of_proto(request):
    out = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                check_id(span.trace_id, 16, "trace_id")
                check_id(span.span_id, 8, "span_id")
                if span.parent_span_id:
                    check_id(span.parent_span_id, 8, "parent_span_id")
                out.append((span.trace_id.hex(), span.span_id.hex()))
    return out


def points_of_metric(metric):
    kind = metric.WhichOneof("data")
    if kind is None:
        raise InvalidOtlp(f"metric {metric.name!r} has no data")
    return len(getattr(metric, kind).data_points)


def metrics_of_proto(request):
    names, points = [], 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                names.append(metric.name)
                points += points_of_metric(metric)
    return names, points


def logs_of_proto(request):
    bodies = []
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                if record.trace_id:
                    check_id(record.trace_id, 16, "trace_id")
                if record.span_id:
                    check_id(record.span_id, 8, "span_id")
                bodies.append(record.body.string_value)
    return bodies


# ---- checks on OTLP/JSON (hex IDs, lowerCamelCase) ----

def hex_id(value, size, what):
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise InvalidOtlp(f"{what} {value!r} is not hex")
    check_id(raw, size, what)
    return raw.hex()


def spans_of_json(body):
    out = []
    for rs in body.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                out.append(
                    (
                        hex_id(span.get("traceId"), 16, "traceId"),
                        hex_id(span.get("spanId"), 8, "spanId"),
                    )
                )
    return out


def metrics_of_json(body):
    names, points = [], 0
    for rm in body.get("resourceMetrics", []):
        for sm in rm.get("scopeMetrics", []):
            for metric in sm.get("metrics", []):
                names.append(metric.get("name", ""))
                kinds = [k for k in ("gauge", "sum", "histogram", "exponentialHistogram", "summary") if k in metric]
                if len(kinds) != 1:
                    raise InvalidOtlp(f"metric {metric.get('name')!r} has data {kinds}")
                points += len(metric[kinds[0]].get("dataPoints", []))
    return names, points


def logs_of_json(body):
    bodies = []
    for rl in body.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for record in sl.get("logRecords", []):
                bodies.append(record.get("body", {}).get("stringValue", ""))
    return bodies


# ---- gRPC ----

def make_servicers(summary):
    def guard(context, handle):
        if summary.take_unavailable("grpc"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "test server: refusing the first requests")
        try:
            handle()
        except InvalidOtlp as e:
            summary.error(f"grpc: {e}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            summary.size(request.ByteSize())
            guard(context, lambda: summary.add_traces(spans_of_proto(request)))
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            summary.size(request.ByteSize())
            guard(context, lambda: summary.add_metrics(*metrics_of_proto(request)))
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):
            summary.size(request.ByteSize())
            guard(context, lambda: summary.add_logs(logs_of_proto(request)))
            return logs_service_pb2.ExportLogsServiceResponse()

    return Traces(), Metrics(), Logs()


# ---- OTLP/HTTP ----

SIGNALS = {
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        lambda s, r: s.add_traces(spans_of_proto(r)),
        lambda s, b: s.add_traces(spans_of_json(b)),
    ),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        lambda s, r: s.add_metrics(*metrics_of_proto(r)),
        lambda s, b: s.add_metrics(*metrics_of_json(b)),
    ),
    "/v1/logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        lambda s, r: s.add_logs(logs_of_proto(r)),
        lambda s, b: s.add_logs(logs_of_json(b)),
    ),
}


def make_http_handler(summary):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, content_type, body, extra=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            route = SIGNALS.get(self.path)
            if route is None:
                return self.reply(404, "text/plain", b"not found")
            request_type, response_type, add_proto, add_json = route
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
            summary.note("content_types", content_type)
            summary.note("content_encodings", encoding)
            if summary.take_unavailable("http"):
                return self.reply(
                    503, "text/plain", b"test server: refusing the first requests", [("Retry-After", "1")]
                )
            try:
                if encoding == "gzip":
                    data = gzip.decompress(raw)
                elif encoding in ("deflate", "zlib"):
                    data = zlib.decompress(raw)
                elif encoding in ("identity", ""):
                    data = raw
                else:
                    raise InvalidOtlp(f"unsupported Content-Encoding {encoding}")
                summary.size(len(data))
                if content_type == "application/x-protobuf":
                    add_proto(summary, request_type.FromString(data))
                    body = response_type().SerializeToString()
                elif content_type == "application/json":
                    add_json(summary, json.loads(data))
                    body = b"{}"
                else:
                    return self.reply(415, "text/plain", b"unsupported media type")
            except Exception as e:  # a decode error of any kind is a bad request
                summary.error(f"http: {type(e).__name__}: {e}")
                return self.reply(400, "text/plain", str(e).encode())
            self.reply(200, content_type, body)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--summary", required=True)
    parser.add_argument("--grpc-unavailable-first", type=int, default=0)
    parser.add_argument("--http-unavailable-first", type=int, default=0)
    args = parser.parse_args()

    summary = Summary(args.summary, args.grpc_unavailable_first, args.http_unavailable_first)
    summary.write()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", MAX_GRPC_MESSAGE)],
    )
    traces, metrics, logs = make_servicers(summary)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(traces, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(metrics, server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(logs, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    http = ThreadingHTTPServer(("127.0.0.1", 0), make_http_handler(summary))
    threading.Thread(target=http.serve_forever, daemon=True).start()

    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"grpc_port": grpc_port, "http_port": http.server_address[1]}), flush=True)
    done.wait()
    server.stop(grace=1).wait()
    http.shutdown()
    summary.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
