#!/usr/bin/env python3
"""Sends traces with the OpenTelemetry Python SDK over OTLP/gRPC: each a root
span with status ERROR and four OK children, for one service. Prints one
JSON object: {"trace_ids": [hex...], "spans": n, "failed_exports": n}.

    send_error_traces.py --endpoint http://10.213.0.21:4317 --traces 20 --service ollyscale-e2e
"""

import argparse
import json

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode


class Checked(SpanExporter):
    """Counts exports that did not succeed, so the caller can fail on them."""

    def __init__(self, inner):
        self.inner = inner
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failed += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--traces", type=int, default=10)
    parser.add_argument("--service", default="ollyscale-e2e")
    args = parser.parse_args()

    exporter = Checked(OTLPSpanExporter(endpoint=args.endpoint, insecure=True, timeout=20))
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64))
    tracer = provider.get_tracer("chart-e2e")

    trace_ids = []
    for i in range(args.traces):
        with tracer.start_as_current_span(f"request {i}") as root:
            for step in range(4):
                with tracer.start_as_current_span(f"step {step}"):
                    pass
            root.set_status(Status(StatusCode.ERROR, "failed on purpose"))
            trace_ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.force_flush(60000)
    provider.shutdown()
    print(json.dumps({"trace_ids": trace_ids, "spans": 5 * len(trace_ids), "failed_exports": exporter.failed}))


if __name__ == "__main__":
    main()
