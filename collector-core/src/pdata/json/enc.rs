//! OTLP/JSON encoder: a minimal JSON object writer plus one [`Encode`] impl
//! per message type (common, resource, trace and logs here; metrics in
//! `enc_metrics`).
//!
//! Recursion follows the nesting of `AnyValue`s; inputs come either from our
//! own decoders or from prost, both of which bound nesting depth.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// A message that can write itself as a JSON object.
pub(super) trait Encode {
    fn encode(&self, out: &mut String);
}

pub(super) fn encode_message<T: Encode>(msg: &T) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    msg.encode(&mut out);
    out.into_bytes()
}

pub(super) fn encode_partial_success(
    rejected: i64,
    error_message: &str,
    signal_field: &str,
) -> Vec<u8> {
    let mut out = String::with_capacity(64 + error_message.len());
    if rejected == 0 && error_message.is_empty() {
        out.push_str("{}");
    } else {
        let mut o = Obj::begin(&mut out);
        o.key("partialSuccess");
        let mut p = Obj::begin(o.out);
        if rejected != 0 {
            // The field name comes from the caller: escape it like any string.
            p.sep();
            write_str(p.out, signal_field);
            p.out.push(':');
            write_quoted_int(p.out, rejected);
        }
        p.str("errorMessage", error_message);
        p.end();
        o.end();
    }
    out.into_bytes()
}

pub(super) fn encode_status(code: i32, message: &str) -> Vec<u8> {
    let mut out = String::with_capacity(32 + message.len());
    let mut o = Obj::begin(&mut out);
    // Always written, even 0, so that clients see an explicit code.
    o.key("code");
    write_int(o.out, code);
    o.str("message", message);
    o.end();
    out.into_bytes()
}

/// Writes one JSON object, omitting fields that hold their default value
/// (proto3 JSON semantics) unless told otherwise.
pub(super) struct Obj<'a> {
    pub(super) out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub(super) fn begin(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    pub(super) fn end(self) {
        self.out.push('}');
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    /// Starts a field; `name` is one of our static ASCII field names and so
    /// needs no escaping.
    pub(super) fn key(&mut self, name: &str) {
        self.sep();
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    pub(super) fn str(&mut self, name: &str, v: &str) {
        if !v.is_empty() {
            self.key(name);
            write_str(self.out, v);
        }
    }

    pub(super) fn bool(&mut self, name: &str, v: bool) {
        if v {
            self.key(name);
            self.out.push_str("true");
        }
    }

    /// 32-bit integers and enums: plain JSON numbers.
    pub(super) fn int<T: Into<i64>>(&mut self, name: &str, v: T) {
        let v = v.into();
        if v != 0 {
            self.key(name);
            write_int(self.out, v);
        }
    }

    /// 64-bit integers: decimal strings, as JSON numbers lose precision
    /// beyond 2^53 in most parsers.
    pub(super) fn int64<T: Into<i128> + Copy>(&mut self, name: &str, v: T) {
        if v.into() != 0 {
            self.key(name);
            write_quoted_int(self.out, v.into());
        }
    }

    pub(super) fn f64(&mut self, name: &str, v: f64) {
        // NaN compares unequal to 0 and is therefore written, as it must be.
        if v != 0.0 {
            self.key(name);
            write_f64(self.out, v);
        }
    }

    /// proto3 `optional` double: written whenever present, even if 0.
    pub(super) fn opt_f64(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.key(name);
            write_f64(self.out, v);
        }
    }

    /// Trace/span ids: lowercase hex.
    pub(super) fn hex(&mut self, name: &str, v: &[u8]) {
        if !v.is_empty() {
            self.key(name);
            write_hex(self.out, v);
        }
    }

    /// Singular message field: written whenever present, even if empty,
    /// so that presence survives a round trip.
    pub(super) fn msg<T: Encode>(&mut self, name: &str, v: Option<&T>) {
        if let Some(v) = v {
            self.key(name);
            v.encode(self.out);
        }
    }

    pub(super) fn msgs<T: Encode>(&mut self, name: &str, v: &[T]) {
        self.list(name, v, |out, item| item.encode(out));
    }

    pub(super) fn list<T>(&mut self, name: &str, v: &[T], mut each: impl FnMut(&mut String, &T)) {
        if v.is_empty() {
            return;
        }
        self.key(name);
        self.out.push('[');
        for (i, item) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            each(self.out, item);
        }
        self.out.push(']');
    }
}

pub(super) fn write_int(out: &mut String, v: impl std::fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{v}");
}

pub(super) fn write_quoted_int(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "\"{v}\"");
}

pub(super) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // `Debug` gives the shortest representation that parses back to the
        // same value, and switches to exponent notation for very large or
        // small magnitudes (`Display` would print hundreds of digits); both
        // forms are valid JSON numbers.
        let _ = write!(out, "{v:?}");
    }
}

fn write_hex(out: &mut String, v: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(v.len() * 2 + 2);
    out.push('"');
    for &b in v {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out.push('"');
}

/// Writes `s` as a JSON string literal.
pub(super) fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes get here, so `start..i` is on char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

// --- common -----------------------------------------------------------------

impl Encode for AnyValue {
    fn encode(&self, out: &mut String) {
        use any_value::Value;
        let mut o = Obj::begin(out);
        // Oneof members are written even when they hold a default value:
        // `{"stringValue":""}` and `{}` are different AnyValues.
        match &self.value {
            None => {}
            Some(Value::StringValue(v)) => {
                o.key("stringValue");
                write_str(o.out, v);
            }
            Some(Value::BoolValue(v)) => {
                o.key("boolValue");
                o.out.push_str(if *v { "true" } else { "false" });
            }
            Some(Value::IntValue(v)) => {
                o.key("intValue");
                write_quoted_int(o.out, v);
            }
            Some(Value::DoubleValue(v)) => {
                o.key("doubleValue");
                write_f64(o.out, *v);
            }
            Some(Value::ArrayValue(v)) => {
                o.key("arrayValue");
                v.encode(o.out);
            }
            Some(Value::KvlistValue(v)) => {
                o.key("kvlistValue");
                v.encode(o.out);
            }
            Some(Value::BytesValue(v)) => {
                o.key("bytesValue");
                o.out.push('"');
                B64.encode_string(v, o.out);
                o.out.push('"');
            }
            Some(Value::StringValueStrindex(v)) => {
                o.key("stringValueStrindex");
                write_int(o.out, v);
            }
        }
        o.end();
    }
}

impl Encode for ArrayValue {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("values", &self.values);
        o.end();
    }
}

impl Encode for KeyValueList {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("values", &self.values);
        o.end();
    }
}

impl Encode for KeyValue {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.str("key", &self.key);
        o.msg("value", self.value.as_ref());
        o.int("keyStrindex", self.key_strindex);
        o.end();
    }
}

impl Encode for InstrumentationScope {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.str("name", &self.name);
        o.str("version", &self.version);
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.end();
    }
}

impl Encode for EntityRef {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.str("schemaUrl", &self.schema_url);
        o.str("type", &self.r#type);
        o.list("idKeys", &self.id_keys, |out, k| write_str(out, k));
        o.list("descriptionKeys", &self.description_keys, |out, k| {
            write_str(out, k);
        });
        o.end();
    }
}

impl Encode for Resource {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.msgs("entityRefs", &self.entity_refs);
        o.end();
    }
}

// --- traces -----------------------------------------------------------------

impl Encode for ExportTraceServiceRequest {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("resourceSpans", &self.resource_spans);
        o.end();
    }
}

impl Encode for ResourceSpans {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("resource", self.resource.as_ref());
        o.msgs("scopeSpans", &self.scope_spans);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for ScopeSpans {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("scope", self.scope.as_ref());
        o.msgs("spans", &self.spans);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for Span {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.hex("traceId", &self.trace_id);
        o.hex("spanId", &self.span_id);
        o.str("traceState", &self.trace_state);
        o.hex("parentSpanId", &self.parent_span_id);
        o.int("flags", self.flags);
        o.str("name", &self.name);
        o.int("kind", self.kind);
        o.int64("startTimeUnixNano", self.start_time_unix_nano);
        o.int64("endTimeUnixNano", self.end_time_unix_nano);
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.msgs("events", &self.events);
        o.int("droppedEventsCount", self.dropped_events_count);
        o.msgs("links", &self.links);
        o.int("droppedLinksCount", self.dropped_links_count);
        o.msg("status", self.status.as_ref());
        o.end();
    }
}

impl Encode for Event {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.int64("timeUnixNano", self.time_unix_nano);
        o.str("name", &self.name);
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.end();
    }
}

impl Encode for Link {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.hex("traceId", &self.trace_id);
        o.hex("spanId", &self.span_id);
        o.str("traceState", &self.trace_state);
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.int("flags", self.flags);
        o.end();
    }
}

impl Encode for Status {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.str("message", &self.message);
        o.int("code", self.code);
        o.end();
    }
}

// --- logs -------------------------------------------------------------------

impl Encode for ExportLogsServiceRequest {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("resourceLogs", &self.resource_logs);
        o.end();
    }
}

impl Encode for ResourceLogs {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("resource", self.resource.as_ref());
        o.msgs("scopeLogs", &self.scope_logs);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for ScopeLogs {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("scope", self.scope.as_ref());
        o.msgs("logRecords", &self.log_records);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for LogRecord {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.int64("timeUnixNano", self.time_unix_nano);
        o.int64("observedTimeUnixNano", self.observed_time_unix_nano);
        o.int("severityNumber", self.severity_number);
        o.str("severityText", &self.severity_text);
        o.msg("body", self.body.as_ref());
        o.msgs("attributes", &self.attributes);
        o.int("droppedAttributesCount", self.dropped_attributes_count);
        o.int("flags", self.flags);
        o.hex("traceId", &self.trace_id);
        o.hex("spanId", &self.span_id);
        o.str("eventName", &self.event_name);
        o.end();
    }
}
