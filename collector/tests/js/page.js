// The page collector/tests/browser_sdk.rs loads in headless Chromium. Bundled
// with esbuild (IIFE) by the test. Query parameters:
//   collector  the collector's base URL (another origin), e.g. http://127.0.0.1:4318
//   mode       "sdk": the web SDK (document-load, fetch, manual spans, a log)
//              "beacon": one hand-built OTLP/JSON span through navigator.sendBeacon
//   timeout    the exporters' timeout in milliseconds (default 5000)
// When done it sets document.title to "done" and writes what happened, as
// JSON, into <pre id="result">; the test reads both from --dump-dom.

import { SpanStatusCode, context, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { DocumentLoadInstrumentation } from '@opentelemetry/instrumentation-document-load';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { WebTracerProvider } from '@opentelemetry/sdk-trace-web';

const params = new URLSearchParams(window.location.search);
const collector = (params.get('collector') || '').replace(/\/$/, '');
const mode = params.get('mode') || 'sdk';
const timeoutMillis = Number(params.get('timeout') || '5000');

const result = { mode, exports: [], errors: [] };

function finish() {
  const pre = document.createElement('pre');
  pre.id = 'result';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
  document.title = 'done';
}

function describe(error) {
  if (!error) return null;
  return String(error && error.message ? error.message : error);
}

// Delegates to an OTLP exporter and records every export's outcome, so the
// test sees what the browser got back (a refused preflight is an error here).
function recording(signal, exporter) {
  return {
    export(items, done) {
      exporter.export(items, (outcome) => {
        result.exports.push({
          signal,
          items: items.length,
          code: outcome.code,
          error: describe(outcome.error),
        });
        done(outcome);
      });
    },
    forceFlush: () => (exporter.forceFlush ? exporter.forceFlush() : Promise.resolve()),
    shutdown: () => exporter.shutdown(),
  };
}

// A span processor that resolves a promise when a span of the given name ends:
// the document-load and fetch instrumentations end their spans on their own
// schedule (after the load event, after the resource timing entry).
function endedSpans() {
  const waiters = new Map();
  const ended = new Set();
  return {
    processor: {
      onStart() {},
      onEnd(span) {
        ended.add(span.name);
        const waiting = waiters.get(span.name) || [];
        waiters.delete(span.name);
        waiting.forEach((resolve) => resolve());
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    },
    ended(name) {
      if (ended.has(name)) return Promise.resolve();
      return new Promise((resolve) => {
        const waiting = waiters.get(name) || [];
        waiting.push(resolve);
        waiters.set(name, waiting);
      });
    },
  };
}

async function runSdk() {
  const resource = resourceFromAttributes({ 'service.name': 'rum-test' });
  const watcher = endedSpans();
  const spanProcessor = new BatchSpanProcessor(
    recording(
      'traces',
      new OTLPTraceExporter({ url: `${collector}/v1/traces`, timeoutMillis }),
    ),
    { scheduledDelayMillis: 60000 },
  );
  const tracerProvider = new WebTracerProvider({
    resource,
    spanProcessors: [watcher.processor, spanProcessor],
  });
  tracerProvider.register();

  // sdk-logs 0.2xx: one options object (a positional exporter is ignored).
  const logProcessor = new BatchLogRecordProcessor({
    exporter: recording(
      'logs',
      new OTLPLogExporter({ url: `${collector}/v1/logs`, timeoutMillis }),
    ),
    scheduledDelayMillis: 60000,
  });
  const loggerProvider = new LoggerProvider({ resource, processors: [logProcessor] });

  registerInstrumentations({
    tracerProvider,
    instrumentations: [
      new DocumentLoadInstrumentation(),
      new FetchInstrumentation({ ignoreUrls: [collector] }),
    ],
  });

  // The document-load span ends a task after the load event.
  await watcher.ended('documentLoad');

  const response = await fetch('/api/ping?from=page');
  result.fetchStatus = response.status;
  result.fetchBody = await response.text();
  await watcher.ended('GET');

  const tracer = tracerProvider.getTracer('rum-test-page', '1.0.0');
  const parent = tracer.startSpan('checkout.flow');
  const child = tracer.startSpan(
    'checkout.submit',
    {
      attributes: { 'app.user_action': 'checkout', 'app.cart_items': 3 },
    },
    trace.setSpan(context.active(), parent),
  );
  child.recordException(new Error('boom'));
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'boom' });
  child.end();
  parent.end();
  result.parentSpanId = parent.spanContext().spanId;
  result.childSpanId = child.spanContext().spanId;
  result.traceId = parent.spanContext().traceId;

  loggerProvider.getLogger('rum-test-page').emit({
    severityNumber: SeverityNumber.INFO,
    severityText: 'INFO',
    body: 'checkout submitted',
    attributes: { 'app.user_action': 'checkout' },
  });

  for (const [name, provider] of [
    ['traces', tracerProvider],
    ['logs', loggerProvider],
  ]) {
    try {
      await provider.forceFlush();
      result[`${name}Flushed`] = true;
    } catch (error) {
      result[`${name}Flushed`] = false;
      result.errors.push(`${name} flush: ${describe(error)}`);
    }
  }
}

function randomHex(bytes) {
  const buffer = new Uint8Array(bytes);
  crypto.getRandomValues(buffer);
  return Array.from(buffer, (b) => b.toString(16).padStart(2, '0')).join('');
}

// OTLP/JSON by hand: sendBeacon cannot set headers, so the body goes out as
// text/plain (a CORS-safelisted type: no preflight), which the browser config
// accepts as JSON.
function runBeacon() {
  const now = BigInt(Date.now()) * 1000000n;
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  const body = {
    resourceSpans: [
      {
        resource: {
          attributes: [{ key: 'service.name', value: { stringValue: 'rum-test' } }],
        },
        scopeSpans: [
          {
            scope: { name: 'rum-test-beacon' },
            spans: [
              {
                traceId,
                spanId,
                name: 'page.beacon',
                kind: 1,
                startTimeUnixNano: String(now - 5000000n),
                endTimeUnixNano: String(now),
                attributes: [{ key: 'app.beacon', value: { boolValue: true } }],
              },
            ],
          },
        ],
      },
    ],
  };
  const blob = new Blob([JSON.stringify(body)], { type: 'text/plain;charset=UTF-8' });
  result.beaconQueued = navigator.sendBeacon(`${collector}/v1/traces`, blob);
  result.traceId = traceId;
  result.spanId = spanId;
}

async function main() {
  try {
    if (!collector) throw new Error('no collector= query parameter');
    if (mode === 'sdk') {
      await runSdk();
    } else if (mode === 'beacon') {
      runBeacon();
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } catch (error) {
    result.errors.push(`page: ${describe(error)}`);
  }
  finish();
}

main();
