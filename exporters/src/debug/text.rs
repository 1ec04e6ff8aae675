//! Rendering batches as text at `basic`, `normal` and `detailed` verbosity,
//! close to otelcol's debug exporter output.

use super::Verbosity;
use crate::civil::Civil;
use collector_core::pdata::Payload;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::fmt::Write as _;

/// The basic line: `Traces {"resource spans": 1, "spans": 2}`.
pub(super) fn summary(payload: &Payload) -> String {
    match payload {
        Payload::Traces(b) => format!(
            "Traces {{\"resource spans\": {}, \"spans\": {}}}",
            b.request().resource_spans.len(),
            b.item_count()
        ),
        Payload::Metrics(b) => {
            let metrics: usize = b
                .request()
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            format!(
                "Metrics {{\"resource metrics\": {}, \"metrics\": {}, \"data points\": {}}}",
                b.request().resource_metrics.len(),
                metrics,
                b.item_count()
            )
        }
        Payload::Logs(b) => format!(
            "Logs {{\"resource logs\": {}, \"log records\": {}}}",
            b.request().resource_logs.len(),
            b.item_count()
        ),
    }
}

/// The text of a payload at `normal` or `detailed` verbosity.
pub(super) fn render(payload: &Payload, verbosity: Verbosity) -> String {
    let detailed = verbosity == Verbosity::Detailed;
    let mut out = String::new();
    match payload {
        Payload::Traces(b) => traces(&mut out, b.request(), detailed),
        Payload::Metrics(b) => metrics(&mut out, b.request(), detailed),
        Payload::Logs(b) => logs(&mut out, b.request(), detailed),
    }
    out
}

fn resource_header(
    out: &mut String,
    kind: &str,
    i: usize,
    resource: Option<&Resource>,
    schema_url: &str,
    detailed: bool,
) {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    if detailed {
        let _ = writeln!(out, "{kind} #{i}");
        let _ = writeln!(out, "Resource SchemaURL: {schema_url}");
        attribute_block(out, "Resource attributes", attributes, "");
    } else {
        let _ = writeln!(out, "{kind} #{i}{}", inline_attributes(attributes));
    }
}

fn scope_header(
    out: &mut String,
    kind: &str,
    i: usize,
    scope: Option<&InstrumentationScope>,
    schema_url: &str,
    detailed: bool,
) {
    let (name, version) = scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
    if detailed {
        let _ = writeln!(out, "{kind} #{i}");
        let _ = writeln!(out, "{kind} SchemaURL: {schema_url}");
        let _ = writeln!(out, "InstrumentationScope {name} {version}");
        if let Some(scope) = scope {
            attribute_block(
                out,
                "InstrumentationScope attributes",
                &scope.attributes,
                "",
            );
        }
    } else {
        let version = if version.is_empty() {
            String::new()
        } else {
            format!("@{version}")
        };
        let _ = writeln!(out, "{kind} #{i} {name}{version}");
    }
}

fn traces(out: &mut String, request: &ExportTraceServiceRequest, detailed: bool) {
    for (ri, rs) in request.resource_spans.iter().enumerate() {
        resource_header(
            out,
            "ResourceSpans",
            ri,
            rs.resource.as_ref(),
            &rs.schema_url,
            detailed,
        );
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            scope_header(
                out,
                "ScopeSpans",
                si,
                ss.scope.as_ref(),
                &ss.schema_url,
                detailed,
            );
            for (i, span) in ss.spans.iter().enumerate() {
                if !detailed {
                    let _ = writeln!(
                        out,
                        "{} {} {}{}",
                        span.name,
                        hex::encode(&span.trace_id),
                        hex::encode(&span.span_id),
                        inline_attributes(&span.attributes)
                    );
                    continue;
                }
                let status = span.status.as_ref();
                let _ = writeln!(out, "Span #{i}");
                let fields = [
                    ("Trace ID", hex::encode(&span.trace_id)),
                    ("Parent ID", hex::encode(&span.parent_span_id)),
                    ("ID", hex::encode(&span.span_id)),
                    ("Name", span.name.clone()),
                    ("Kind", span_kind(span.kind).to_string()),
                    ("TraceState", span.trace_state.clone()),
                    ("Start time", time(span.start_time_unix_nano)),
                    ("End time", time(span.end_time_unix_nano)),
                    (
                        "Status code",
                        status_code(status.map_or(0, |s| s.code)).to_string(),
                    ),
                    (
                        "Status message",
                        status.map_or(String::new(), |s| s.message.clone()),
                    ),
                    (
                        "DroppedAttributesCount",
                        span.dropped_attributes_count.to_string(),
                    ),
                    ("DroppedEventsCount", span.dropped_events_count.to_string()),
                    ("DroppedLinksCount", span.dropped_links_count.to_string()),
                ];
                for (name, value) in fields {
                    let _ = writeln!(out, "    {name:<14} : {value}");
                }
                attribute_block(out, "Attributes", &span.attributes, "");
                if !span.events.is_empty() {
                    let _ = writeln!(out, "Events:");
                    for (ei, event) in span.events.iter().enumerate() {
                        let _ = writeln!(out, "SpanEvent #{ei}");
                        let _ = writeln!(out, "     -> Name: {}", event.name);
                        let _ = writeln!(out, "     -> Timestamp: {}", time(event.time_unix_nano));
                        attribute_block(out, "     -> Attributes", &event.attributes, "     ");
                    }
                }
                if !span.links.is_empty() {
                    let _ = writeln!(out, "Links:");
                    for (li, link) in span.links.iter().enumerate() {
                        let _ = writeln!(out, "SpanLink #{li}");
                        let _ = writeln!(out, "     -> Trace ID: {}", hex::encode(&link.trace_id));
                        let _ = writeln!(out, "     -> ID: {}", hex::encode(&link.span_id));
                        let _ = writeln!(out, "     -> TraceState: {}", link.trace_state);
                        attribute_block(out, "     -> Attributes", &link.attributes, "     ");
                    }
                }
            }
        }
    }
}

fn metrics(out: &mut String, request: &ExportMetricsServiceRequest, detailed: bool) {
    for (ri, rm) in request.resource_metrics.iter().enumerate() {
        resource_header(
            out,
            "ResourceMetrics",
            ri,
            rm.resource.as_ref(),
            &rm.schema_url,
            detailed,
        );
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            scope_header(
                out,
                "ScopeMetrics",
                si,
                sm.scope.as_ref(),
                &sm.schema_url,
                detailed,
            );
            for (mi, m) in sm.metrics.iter().enumerate() {
                if detailed {
                    let _ = writeln!(out, "Metric #{mi}");
                    let _ = writeln!(out, "Descriptor:");
                    let _ = writeln!(out, "     -> Name: {}", m.name);
                    let _ = writeln!(out, "     -> Description: {}", m.description);
                    let _ = writeln!(out, "     -> Unit: {}", m.unit);
                    let _ = writeln!(out, "     -> DataType: {}", data_type(m.data.as_ref()));
                }
                metric_points(out, &m.name, m.data.as_ref(), detailed);
            }
        }
    }
}

/// One line (normal) or block (detailed) per data point.
fn metric_points(out: &mut String, name: &str, data: Option<&metric::Data>, detailed: bool) {
    let point =
        |out: &mut String, i: usize, attrs: &[KeyValue], start: u64, t: u64, value: String| {
            if detailed {
                let _ = writeln!(out, "DataPoint #{i}");
                attribute_block(out, "Data point attributes", attrs, "");
                let _ = writeln!(out, "StartTimestamp: {}", time(start));
                let _ = writeln!(out, "Timestamp: {}", time(t));
                let _ = writeln!(out, "Value: {value}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {value}", attributes_joined(attrs, ","));
            }
        };
    match data {
        Some(metric::Data::Gauge(g)) => {
            for (i, p) in g.data_points.iter().enumerate() {
                point(
                    out,
                    i,
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    number(p.value),
                );
            }
        }
        Some(metric::Data::Sum(s)) => {
            for (i, p) in s.data_points.iter().enumerate() {
                point(
                    out,
                    i,
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    number(p.value),
                );
            }
        }
        Some(metric::Data::Histogram(h)) => {
            for (i, p) in h.data_points.iter().enumerate() {
                let mut value = format!("count={}", p.count);
                if let Some(sum) = p.sum {
                    let _ = write!(value, " sum={sum}");
                }
                if let Some(min) = p.min {
                    let _ = write!(value, " min={min}");
                }
                if let Some(max) = p.max {
                    let _ = write!(value, " max={max}");
                }
                for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                    let _ = write!(value, " le{bound}={count}");
                }
                point(
                    out,
                    i,
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    value,
                );
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            for (i, p) in h.data_points.iter().enumerate() {
                let mut value = format!(
                    "count={} scale={} zero_count={}",
                    p.count, p.scale, p.zero_count
                );
                if let Some(sum) = p.sum {
                    let _ = write!(value, " sum={sum}");
                }
                point(
                    out,
                    i,
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    value,
                );
            }
        }
        Some(metric::Data::Summary(s)) => {
            for (i, p) in s.data_points.iter().enumerate() {
                let mut value = format!("count={} sum={}", p.count, p.sum);
                for q in &p.quantile_values {
                    let _ = write!(value, " q{}={}", q.quantile, q.value);
                }
                point(
                    out,
                    i,
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    value,
                );
            }
        }
        None => {}
    }
}

fn logs(out: &mut String, request: &ExportLogsServiceRequest, detailed: bool) {
    for (ri, rl) in request.resource_logs.iter().enumerate() {
        resource_header(
            out,
            "ResourceLog",
            ri,
            rl.resource.as_ref(),
            &rl.schema_url,
            detailed,
        );
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            scope_header(
                out,
                "ScopeLogs",
                si,
                sl.scope.as_ref(),
                &sl.schema_url,
                detailed,
            );
            for (i, record) in sl.log_records.iter().enumerate() {
                let body = record.body.as_ref().map(value_text).unwrap_or_default();
                if !detailed {
                    let _ = writeln!(out, "{body}{}", inline_attributes(&record.attributes));
                    continue;
                }
                let _ = writeln!(out, "LogRecord #{i}");
                let _ = writeln!(
                    out,
                    "ObservedTimestamp: {}",
                    time(record.observed_time_unix_nano)
                );
                let _ = writeln!(out, "Timestamp: {}", time(record.time_unix_nano));
                let _ = writeln!(out, "SeverityText: {}", record.severity_text);
                let _ = writeln!(out, "SeverityNumber: {}", record.severity_number);
                if !record.event_name.is_empty() {
                    let _ = writeln!(out, "EventName: {}", record.event_name);
                }
                let _ = writeln!(
                    out,
                    "Body: {}",
                    record
                        .body
                        .as_ref()
                        .map(typed_value)
                        .unwrap_or_else(|| "Empty()".into())
                );
                attribute_block(out, "Attributes", &record.attributes, "");
                let _ = writeln!(out, "Trace ID: {}", hex::encode(&record.trace_id));
                let _ = writeln!(out, "Span ID: {}", hex::encode(&record.span_id));
                let _ = writeln!(out, "Flags: {}", record.flags);
            }
        }
    }
}

fn time(unix_nanos: u64) -> String {
    Civil::utc_from_nanos(unix_nanos).rfc3339_nanos()
}

fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

fn status_code(code: i32) -> &'static str {
    match code {
        1 => "Ok",
        2 => "Error",
        _ => "Unset",
    }
}

fn data_type(data: Option<&metric::Data>) -> &'static str {
    match data {
        Some(metric::Data::Gauge(_)) => "Gauge",
        Some(metric::Data::Sum(_)) => "Sum",
        Some(metric::Data::Histogram(_)) => "Histogram",
        Some(metric::Data::ExponentialHistogram(_)) => "ExponentialHistogram",
        Some(metric::Data::Summary(_)) => "Summary",
        None => "Empty",
    }
}

fn number(value: Option<number_data_point::Value>) -> String {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => d.to_string(),
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        None => String::new(),
    }
}

/// ` k=v k2=v2` (with a leading space), or nothing.
fn inline_attributes(attributes: &[KeyValue]) -> String {
    if attributes.is_empty() {
        return String::new();
    }
    format!(" {}", attributes_joined(attributes, " "))
}

fn attributes_joined(attributes: &[KeyValue], separator: &str) -> String {
    attributes
        .iter()
        .map(|kv| {
            format!(
                "{}={}",
                kv.key,
                kv.value.as_ref().map(value_text).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// `Title:` then `     -> key: Str(value)` lines; nothing when empty.
fn attribute_block(out: &mut String, title: &str, attributes: &[KeyValue], indent: &str) {
    if attributes.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for kv in attributes {
        let value = kv
            .value
            .as_ref()
            .map(typed_value)
            .unwrap_or_else(|| "Empty()".into());
        let _ = writeln!(out, "{indent}     -> {}: {value}", kv.key);
    }
}

/// Nesting beyond this is shown as `...` (values come from the network).
const MAX_DEPTH: usize = 16;

/// A value as text (`AsString` in pdata): strings bare, the rest JSON-like.
fn value_text(value: &AnyValue) -> String {
    let mut out = String::new();
    write_value(&mut out, value, false, 0);
    out
}

/// A value with its type, as otelcol's detailed output: `Str(x)`, `Int(1)`.
pub(super) fn typed_value(value: &AnyValue) -> String {
    let (kind, text) = match &value.value {
        Some(any_value::Value::StringValue(s)) => ("Str", s.clone()),
        Some(any_value::Value::BoolValue(_)) => ("Bool", value_text(value)),
        Some(any_value::Value::IntValue(_)) => ("Int", value_text(value)),
        Some(any_value::Value::DoubleValue(_)) => ("Double", value_text(value)),
        Some(any_value::Value::BytesValue(_)) => ("Bytes", value_text(value)),
        Some(any_value::Value::ArrayValue(_)) => ("Slice", value_text(value)),
        Some(any_value::Value::KvlistValue(_)) => ("Map", value_text(value)),
        Some(any_value::Value::StringValueStrindex(_)) | None => ("Empty", String::new()),
    };
    format!("{kind}({text})")
}

fn write_value(out: &mut String, value: &AnyValue, quoted: bool, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match &value.value {
        Some(any_value::Value::StringValue(s)) if quoted => {
            let _ = write!(out, "{s:?}");
        }
        Some(any_value::Value::StringValue(s)) => out.push_str(s),
        Some(any_value::Value::BoolValue(b)) => {
            let _ = write!(out, "{b}");
        }
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::BytesValue(b)) => out.push_str(&hex::encode(b)),
        Some(any_value::Value::ArrayValue(array)) => {
            out.push('[');
            for (i, v) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, v, true, depth + 1);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{:?}:", kv.key);
                match &kv.value {
                    Some(v) => write_value(out, v, true, depth + 1),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => {}
    }
}
