//! [`Message`] implementations for the common, resource, trace and logs
//! types. Field names are the lowerCamelCase JSON names; `de` also matches
//! their snake_case forms.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::de::MapAccess;

use super::de::{Ctx, Message, msg, msgs, opt_scalar, scalar, scalars, skip};
use super::de_scalar::{B64, Bool, Enum, F64, Hex, I32, I64, Str, U32, U64};

// --- common -----------------------------------------------------------------

impl Message for AnyValue {
    const FIELDS: &'static [&'static str] = &[
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
        "stringValueStrindex",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        use any_value::Value;
        // This frame is on the recursive path of nested values: keep it
        // small by leaving the scalar members to a separate function.
        let value = match name {
            "arrayValue" => msg(m, c)?.map(Value::ArrayValue),
            "kvlistValue" => msg(m, c)?.map(Value::KvlistValue),
            _ => any_scalar(name, m)?,
        };
        // A oneof: `null` leaves it unset; the last non-null member wins.
        if value.is_some() {
            self.value = value;
        }
        Ok(())
    }
}

#[inline(never)]
fn any_scalar<'de, A: MapAccess<'de>>(
    name: &'static str,
    m: &mut A,
) -> Result<Option<any_value::Value>, A::Error> {
    use any_value::Value;
    Ok(match name {
        "stringValue" => opt_scalar(m, Str)?.map(Value::StringValue),
        "boolValue" => opt_scalar(m, Bool)?.map(Value::BoolValue),
        "intValue" => opt_scalar(m, I64)?.map(Value::IntValue),
        "doubleValue" => opt_scalar(m, F64)?.map(Value::DoubleValue),
        "bytesValue" => opt_scalar(m, B64)?.map(Value::BytesValue),
        "stringValueStrindex" => opt_scalar(m, I32)?.map(Value::StringValueStrindex),
        _ => {
            skip(m)?;
            None
        }
    })
}

impl Message for ArrayValue {
    const FIELDS: &'static [&'static str] = &["values"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "values" => self.values = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for KeyValueList {
    const FIELDS: &'static [&'static str] = &["values"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "values" => self.values = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for KeyValue {
    const FIELDS: &'static [&'static str] = &["key", "value", "keyStrindex"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "key" => self.key = scalar(m, Str)?,
            "value" => self.value = msg(m, c)?,
            "keyStrindex" => self.key_strindex = scalar(m, I32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for InstrumentationScope {
    const FIELDS: &'static [&'static str] =
        &["name", "version", "attributes", "droppedAttributesCount"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "name" => self.name = scalar(m, Str)?,
            "version" => self.version = scalar(m, Str)?,
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for EntityRef {
    const FIELDS: &'static [&'static str] = &["schemaUrl", "type", "idKeys", "descriptionKeys"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            "type" => self.r#type = scalar(m, Str)?,
            "idKeys" => self.id_keys = scalars(m, Str, c)?,
            "descriptionKeys" => self.description_keys = scalars(m, Str, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Resource {
    const FIELDS: &'static [&'static str] = &["attributes", "droppedAttributesCount", "entityRefs"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            "entityRefs" => self.entity_refs = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

// --- traces -----------------------------------------------------------------

fn span_kind(name: &str) -> Option<i32> {
    SpanKind::from_str_name(name).map(|k| k as i32)
}

fn status_code(name: &str) -> Option<i32> {
    StatusCode::from_str_name(name).map(|k| k as i32)
}

impl Message for ExportTraceServiceRequest {
    const FIELDS: &'static [&'static str] = &["resourceSpans"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resourceSpans" => self.resource_spans = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ResourceSpans {
    const FIELDS: &'static [&'static str] = &["resource", "scopeSpans", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resource" => self.resource = msg(m, c)?,
            "scopeSpans" => self.scope_spans = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ScopeSpans {
    const FIELDS: &'static [&'static str] = &["scope", "spans", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "scope" => self.scope = msg(m, c)?,
            "spans" => self.spans = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Span {
    const FIELDS: &'static [&'static str] = &[
        "traceId",
        "spanId",
        "traceState",
        "parentSpanId",
        "flags",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "droppedAttributesCount",
        "events",
        "droppedEventsCount",
        "links",
        "droppedLinksCount",
        "status",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "traceId" => self.trace_id = scalar(m, Hex)?,
            "spanId" => self.span_id = scalar(m, Hex)?,
            "traceState" => self.trace_state = scalar(m, Str)?,
            "parentSpanId" => self.parent_span_id = scalar(m, Hex)?,
            "flags" => self.flags = scalar(m, U32)?,
            "name" => self.name = scalar(m, Str)?,
            "kind" => self.kind = scalar(m, Enum(span_kind))?,
            "startTimeUnixNano" => self.start_time_unix_nano = scalar(m, U64)?,
            "endTimeUnixNano" => self.end_time_unix_nano = scalar(m, U64)?,
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            "events" => self.events = msgs(m, c)?,
            "droppedEventsCount" => self.dropped_events_count = scalar(m, U32)?,
            "links" => self.links = msgs(m, c)?,
            "droppedLinksCount" => self.dropped_links_count = scalar(m, U32)?,
            "status" => self.status = msg(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Event {
    const FIELDS: &'static [&'static str] = &[
        "timeUnixNano",
        "name",
        "attributes",
        "droppedAttributesCount",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "name" => self.name = scalar(m, Str)?,
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Link {
    const FIELDS: &'static [&'static str] = &[
        "traceId",
        "spanId",
        "traceState",
        "attributes",
        "droppedAttributesCount",
        "flags",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "traceId" => self.trace_id = scalar(m, Hex)?,
            "spanId" => self.span_id = scalar(m, Hex)?,
            "traceState" => self.trace_state = scalar(m, Str)?,
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            "flags" => self.flags = scalar(m, U32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Status {
    const FIELDS: &'static [&'static str] = &["message", "code"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        _c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "message" => self.message = scalar(m, Str)?,
            "code" => self.code = scalar(m, Enum(status_code))?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

// --- logs -------------------------------------------------------------------

fn severity_number(name: &str) -> Option<i32> {
    SeverityNumber::from_str_name(name).map(|s| s as i32)
}

impl Message for ExportLogsServiceRequest {
    const FIELDS: &'static [&'static str] = &["resourceLogs"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resourceLogs" => self.resource_logs = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ResourceLogs {
    const FIELDS: &'static [&'static str] = &["resource", "scopeLogs", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resource" => self.resource = msg(m, c)?,
            "scopeLogs" => self.scope_logs = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ScopeLogs {
    const FIELDS: &'static [&'static str] = &["scope", "logRecords", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "scope" => self.scope = msg(m, c)?,
            "logRecords" => self.log_records = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for LogRecord {
    const FIELDS: &'static [&'static str] = &[
        "timeUnixNano",
        "observedTimeUnixNano",
        "severityNumber",
        "severityText",
        "body",
        "attributes",
        "droppedAttributesCount",
        "flags",
        "traceId",
        "spanId",
        "eventName",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "observedTimeUnixNano" => self.observed_time_unix_nano = scalar(m, U64)?,
            "severityNumber" => self.severity_number = scalar(m, Enum(severity_number))?,
            "severityText" => self.severity_text = scalar(m, Str)?,
            "body" => self.body = msg(m, c)?,
            "attributes" => self.attributes = msgs(m, c)?,
            "droppedAttributesCount" => self.dropped_attributes_count = scalar(m, U32)?,
            "flags" => self.flags = scalar(m, U32)?,
            "traceId" => self.trace_id = scalar(m, Hex)?,
            "spanId" => self.span_id = scalar(m, Hex)?,
            "eventName" => self.event_name = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}
