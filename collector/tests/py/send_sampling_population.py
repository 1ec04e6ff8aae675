"""Sends a population of traces for the gateway's tail-sampling policies.

With the OpenTelemetry Python SDK over OTLP/gRPC, one tracer provider per
service (so every service is its own resource), trace and span IDs from a
seeded generator. Prints one JSON line: every trace's ID, category and span
IDs, for the test to compute which traces the original policy set keeps.

Categories (three spans per trace: a server root and two children):
  error            ollyscale-api, a child with status ERROR
  http_4xx         ollyscale-api, a child with string http.status_code "404"
  http_5xx         ollyscale-api, the root with string http.status_code "503"
  int_500          ollyscale-api, the root with INT http.status_code 500,
                   status unset (the regex policy must not match it)
  demo             demo-frontend
  otel_demo        otel-demo-cartservice
  ai_agent         ai-agent-planner
  non_ollyscale    checkout
  mixed_demo       ollyscale-api root, a child in demo-worker
  mixed            ollyscale-api root, a child in checkout
  unanchored       my-ollyscale-proxy (unanchored regexes match it)
  ollyscale_ok     ollyscale-frontend, every span status OK
  ollyscale_success ollyscale-api / ollyscale-frontend, status unset
"""

import argparse
import json
import random
import sys
import threading

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

SMALL = 6  # traces per small category


class SeededIds(IdGenerator):
    """Reproducible, never-zero IDs shared by every provider."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def generate_span_id(self):
        with self.lock:
            return self.rng.getrandbits(64) or 1

    def generate_trace_id(self):
        with self.lock:
            return self.rng.getrandbits(128) or 1


class CheckedExporter(SpanExporter):
    """Remembers failed exports."""

    def __init__(self, inner, failures):
        self.inner, self.failures = inner, failures

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failures.append(f"export of {len(spans)} spans failed: {result}")
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--successes", type=int, default=300)
    args = parser.parse_args()

    ids = SeededIds(args.seed)
    failures = []
    providers = {}

    def tracer(service):
        if service not in providers:
            provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=ids)
            exporter = CheckedExporter(OTLPSpanExporter(endpoint=args.endpoint, insecure=True), failures)
            provider.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=100, max_export_batch_size=128)
            )
            providers[service] = provider
        return providers[service].get_tracer("population", "1.0.0")

    population = []

    def send(category, service, root_attributes=None, child_status=None, child_attributes=None,
             child_service=None, status=None):
        spans = []
        root_tracer = tracer(service)
        child_tracer = tracer(child_service or service)
        with root_tracer.start_as_current_span(
            "GET /work", kind=SpanKind.SERVER, attributes=root_attributes or {}
        ) as root:
            if status is not None:
                root.set_status(Status(status))
            context = trace.set_span_in_context(root)
            for n in range(2):
                with child_tracer.start_as_current_span(
                    f"step {n}", context=context, kind=SpanKind.INTERNAL,
                    attributes=(child_attributes or {}) if n == 1 else {},
                ) as child:
                    if n == 1 and child_status is not None:
                        child.set_status(Status(child_status, "failed" if child_status == StatusCode.ERROR else None))
                    elif status is not None:
                        child.set_status(Status(status))
                    spans.append(child.get_span_context().span_id)
            spans.append(root.get_span_context().span_id)
            trace_id = root.get_span_context().trace_id
        population.append(
            {
                "trace_id": format(trace_id, "032x"),
                "category": category,
                "span_ids": sorted(format(s, "016x") for s in spans),
            }
        )

    for _ in range(SMALL):
        send("error", "ollyscale-api", child_status=StatusCode.ERROR)
        send("http_4xx", "ollyscale-api", child_attributes={"http.status_code": "404"})
        send("http_5xx", "ollyscale-api", root_attributes={"http.status_code": "503"})
        send("int_500", "ollyscale-api", root_attributes={"http.status_code": 500})
        send("demo", "demo-frontend")
        send("otel_demo", "otel-demo-cartservice")
        send("ai_agent", "ai-agent-planner")
        send("non_ollyscale", "checkout")
        send("mixed_demo", "ollyscale-api", child_service="demo-worker")
        send("mixed", "ollyscale-api", child_service="checkout")
        send("unanchored", "my-ollyscale-proxy")
        send("ollyscale_ok", "ollyscale-frontend", status=StatusCode.OK)
    for i in range(args.successes):
        send("ollyscale_success", "ollyscale-api" if i % 2 == 0 else "ollyscale-frontend")

    flushed = all(p.force_flush(30_000) for p in providers.values())
    for provider in providers.values():
        provider.shutdown()
    if not flushed:
        failures.append("force_flush timed out")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(json.dumps({"traces": population}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
