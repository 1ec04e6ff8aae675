//! Routing keys and the split of a batch into one batch per backend.
//!
//! A batch is split along its own structure: each backend's part keeps the
//! resource and scope of the items it holds, in their original order, so
//! every span of a trace that arrived in one batch travels in one part. When
//! every item has the same owner the batch goes on untouched, with its
//! original protobuf bytes.

use super::config::RoutingKey;
use super::ring::HashRing;
use collector_core::pdata::{Logs, Payload, Signal, SignalRequest, Traces};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use std::fmt::Write as _;

mod metrics;
mod wire;

use metrics::split_metrics;

/// The effective routing key of each signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Routes {
    traces: RoutingKey,
    metrics: RoutingKey,
    logs: RoutingKey,
    attributes: Vec<String>,
}

impl Routes {
    /// The keys for `routing_key` (None: otelcol's defaults, `traceID` for
    /// spans and `service` for metrics and logs). A key that does not apply
    /// to a signal (`metric` for spans, `traceID` for metrics) falls back to
    /// that signal's default; the second value lists those signals.
    pub(crate) fn new(key: Option<RoutingKey>, attributes: Vec<String>) -> (Self, Vec<Signal>) {
        use RoutingKey::*;
        let mut fallbacks = Vec::new();
        let mut pick = |signal: Signal, allowed: &[RoutingKey], default: RoutingKey| match key {
            None => default,
            Some(k) if allowed.contains(&k) => k,
            Some(_) => {
                fallbacks.push(signal);
                default
            }
        };
        let routes = Self {
            traces: pick(
                Signal::Traces,
                &[TraceId, Service, Resource, Attributes],
                TraceId,
            ),
            metrics: pick(
                Signal::Metrics,
                &[Service, Resource, Metric, StreamId, Attributes],
                Service,
            ),
            logs: pick(
                Signal::Logs,
                &[TraceId, Service, Resource, Attributes],
                Service,
            ),
            attributes,
        };
        (routes, fallbacks)
    }

    /// The key used for `signal`.
    pub(crate) fn key(&self, signal: Signal) -> RoutingKey {
        match signal {
            Signal::Traces => self.traces,
            Signal::Metrics => self.metrics,
            Signal::Logs => self.logs,
        }
    }

    /// Splits `payload` into parts by owner (an index into
    /// `ring.endpoints()`); each owner appears once. The ring must not be empty.
    pub(crate) fn split(&self, payload: Payload, ring: &HashRing) -> Vec<(usize, Payload)> {
        if ring.endpoints().len() <= 1 {
            return vec![(0, payload)];
        }
        let mut owner = LastOwner::new(ring);
        let mut owner = |key: &[u8]| owner.of(key);
        match payload {
            Payload::Traces(batch) => {
                split_traces(batch, self.traces, &self.attributes, &mut owner)
                    .into_iter()
                    .map(|(o, b)| (o, Payload::Traces(b)))
                    .collect()
            }
            Payload::Metrics(batch) => {
                split_metrics(batch, self.metrics, &self.attributes, &mut owner)
                    .into_iter()
                    .map(|(o, b)| (o, Payload::Metrics(b)))
                    .collect()
            }
            Payload::Logs(batch) => split_logs(batch, self.logs, &self.attributes, &mut owner)
                .into_iter()
                .map(|(o, b)| (o, Payload::Logs(b)))
                .collect(),
        }
    }
}

/// The ring's owner of a key, remembering the last key: a trace's spans
/// usually come one after another, so most spans skip the ring's hash.
struct LastOwner<'r> {
    ring: &'r HashRing,
    key: Vec<u8>,
    owner: Option<usize>,
}

impl<'r> LastOwner<'r> {
    fn new(ring: &'r HashRing) -> Self {
        Self {
            ring,
            key: Vec::new(),
            owner: None,
        }
    }

    fn of(&mut self, key: &[u8]) -> usize {
        if let Some(owner) = self.owner
            && self.key == key
        {
            return owner;
        }
        let owner = self.ring.index_for(key).unwrap_or(0);
        self.key.clear();
        self.key.extend_from_slice(key);
        self.owner = Some(owner);
        owner
    }
}

/// A routing key's bytes, reused between items.
#[derive(Default)]
struct KeyBuf(Vec<u8>);

impl KeyBuf {
    fn clear(&mut self) -> &mut Vec<u8> {
        self.0.clear();
        &mut self.0
    }
}

fn string_value(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// `service.name` of a resource ("" when absent).
fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| string_value(kv.value.as_ref()))
        .unwrap_or("")
}

/// Writes a value as text: strings as they are, others in a stable form.
fn write_value(out: &mut Vec<u8>, value: Option<&AnyValue>) {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return;
    };
    match value {
        any_value::Value::StringValue(s) => out.extend_from_slice(s.as_bytes()),
        any_value::Value::BoolValue(b) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" })
        }
        any_value::Value::IntValue(i) => out.extend_from_slice(i.to_string().as_bytes()),
        any_value::Value::DoubleValue(d) => out.extend_from_slice(d.to_string().as_bytes()),
        any_value::Value::BytesValue(b) => out.extend_from_slice(hex::encode(b).as_bytes()),
        other => {
            let mut text = String::new();
            let _ = write!(text, "{other:?}");
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Writes attributes sorted by key: `key=value` pairs separated by NUL, so
/// the same set in another order gives the same bytes.
fn write_attributes(out: &mut Vec<u8>, attributes: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        out.extend_from_slice(kv.key.as_bytes());
        out.push(b'=');
        write_value(out, kv.value.as_ref());
        out.push(0);
    }
}

fn resource_attributes(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[], |r| r.attributes.as_slice())
}

fn scope_key(out: &mut Vec<u8>, scope: Option<&InstrumentationScope>) {
    if let Some(scope) = scope {
        out.extend_from_slice(scope.name.as_bytes());
        out.push(0);
        out.extend_from_slice(scope.version.as_bytes());
        out.push(0);
    }
}

fn find<'a>(attributes: &'a [KeyValue], name: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == name)
        .and_then(|kv| kv.value.as_ref())
}

/// The `attributes` key: each routing attribute's value, looked up in the
/// resource, then in the item (`pseudo` answers names such as `span.kind`);
/// false when none of them is present.
fn write_routing_attributes(
    out: &mut Vec<u8>,
    names: &[String],
    resource: &[KeyValue],
    item: &[KeyValue],
    pseudo: &dyn Fn(&str) -> Option<String>,
) -> bool {
    let mut found = false;
    for name in names {
        if let Some(text) = pseudo(name) {
            out.extend_from_slice(text.as_bytes());
            found = true;
        } else if let Some(value) = find(resource, name).or_else(|| find(item, name)) {
            write_value(out, Some(value));
            found = true;
        }
        out.push(0);
    }
    found
}

/// How a request's items are nested, for the generic distribution.
trait Nested: SignalRequest {
    type Scope;
    type Item;
    fn take_scopes(resource: &mut Self::Resource) -> Vec<Self::Scope>;
    fn push_scope(resource: &mut Self::Resource, scope: Self::Scope);
    fn take_items(scope: &mut Self::Scope) -> Vec<Self::Item>;
    fn push_item(scope: &mut Self::Scope, item: Self::Item);
    /// The resource without its scopes.
    fn resource_shell(resource: &Self::Resource) -> Self::Resource;
    /// The scope without its items.
    fn scope_shell(scope: &Self::Scope) -> Self::Scope;
}

impl Nested for ExportTraceServiceRequest {
    type Scope = ScopeSpans;
    type Item = Span;
    fn take_scopes(resource: &mut ResourceSpans) -> Vec<ScopeSpans> {
        std::mem::take(&mut resource.scope_spans)
    }
    fn push_scope(resource: &mut ResourceSpans, scope: ScopeSpans) {
        resource.scope_spans.push(scope);
    }
    fn take_items(scope: &mut ScopeSpans) -> Vec<Span> {
        std::mem::take(&mut scope.spans)
    }
    fn push_item(scope: &mut ScopeSpans, item: Span) {
        scope.spans.push(item);
    }
    fn resource_shell(resource: &ResourceSpans) -> ResourceSpans {
        ResourceSpans {
            resource: resource.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: resource.schema_url.clone(),
        }
    }
    fn scope_shell(scope: &ScopeSpans) -> ScopeSpans {
        ScopeSpans {
            scope: scope.scope.clone(),
            spans: Vec::new(),
            schema_url: scope.schema_url.clone(),
        }
    }
}

impl Nested for ExportLogsServiceRequest {
    type Scope = ScopeLogs;
    type Item = LogRecord;
    fn take_scopes(resource: &mut ResourceLogs) -> Vec<ScopeLogs> {
        std::mem::take(&mut resource.scope_logs)
    }
    fn push_scope(resource: &mut ResourceLogs, scope: ScopeLogs) {
        resource.scope_logs.push(scope);
    }
    fn take_items(scope: &mut ScopeLogs) -> Vec<LogRecord> {
        std::mem::take(&mut scope.log_records)
    }
    fn push_item(scope: &mut ScopeLogs, item: LogRecord) {
        scope.log_records.push(item);
    }
    fn resource_shell(resource: &ResourceLogs) -> ResourceLogs {
        ResourceLogs {
            resource: resource.resource.clone(),
            scope_logs: Vec::new(),
            schema_url: resource.schema_url.clone(),
        }
    }
    fn scope_shell(scope: &ScopeLogs) -> ScopeLogs {
        ScopeLogs {
            scope: scope.scope.clone(),
            log_records: Vec::new(),
            schema_url: scope.schema_url.clone(),
        }
    }
}

/// Metrics are distributed by whole `Metric`s; a metric whose points have
/// different owners is first cut into one metric per owner.
impl Nested for ExportMetricsServiceRequest {
    type Scope = ScopeMetrics;
    type Item = Metric;
    fn take_scopes(resource: &mut ResourceMetrics) -> Vec<ScopeMetrics> {
        std::mem::take(&mut resource.scope_metrics)
    }
    fn push_scope(resource: &mut ResourceMetrics, scope: ScopeMetrics) {
        resource.scope_metrics.push(scope);
    }
    fn take_items(scope: &mut ScopeMetrics) -> Vec<Metric> {
        std::mem::take(&mut scope.metrics)
    }
    fn push_item(scope: &mut ScopeMetrics, item: Metric) {
        scope.metrics.push(item);
    }
    fn resource_shell(resource: &ResourceMetrics) -> ResourceMetrics {
        ResourceMetrics {
            resource: resource.resource.clone(),
            scope_metrics: Vec::new(),
            schema_url: resource.schema_url.clone(),
        }
    }
    fn scope_shell(scope: &ScopeMetrics) -> ScopeMetrics {
        ScopeMetrics {
            scope: scope.scope.clone(),
            metrics: Vec::new(),
            schema_url: scope.schema_url.clone(),
        }
    }
}

/// Moves every item of `request` to its owner (`owners` lists them in item
/// order) and returns one request per owner, keeping resources and scopes.
fn distribute<R: Nested>(mut request: R, owners: &[usize]) -> Vec<(usize, R)> {
    let slots = owners.iter().max().map_or(0, |m| m + 1);
    let mut out: Vec<Vec<R::Resource>> = (0..slots).map(|_| Vec::new()).collect();
    let mut next = 0;
    for mut resource in std::mem::take(request.resources_mut()) {
        let mut per_owner: Vec<Option<R::Resource>> = (0..slots).map(|_| None).collect();
        for mut scope in R::take_scopes(&mut resource) {
            let mut scopes: Vec<Option<R::Scope>> = (0..slots).map(|_| None).collect();
            for item in R::take_items(&mut scope) {
                let owner = owners.get(next).copied().unwrap_or(0);
                next += 1;
                let part = scopes[owner].get_or_insert_with(|| R::scope_shell(&scope));
                R::push_item(part, item);
            }
            for (owner, part) in scopes.into_iter().enumerate() {
                if let Some(part) = part {
                    let shell =
                        per_owner[owner].get_or_insert_with(|| R::resource_shell(&resource));
                    R::push_scope(shell, part);
                }
            }
        }
        for (owner, part) in per_owner.into_iter().enumerate() {
            if let Some(part) = part {
                out[owner].push(part);
            }
        }
    }
    out.into_iter()
        .enumerate()
        .filter(|(_, resources)| !resources.is_empty())
        .map(|(owner, resources)| (owner, R::from_resources(resources)))
        .collect()
}

/// True when every owner is the same (or there are none).
fn single_owner(owners: &[usize]) -> Option<usize> {
    let first = owners.first().copied().unwrap_or(0);
    owners.iter().all(|o| *o == first).then_some(first)
}

fn span_kind_name(kind: i32) -> String {
    span::SpanKind::try_from(kind)
        .map(|k| k.as_str_name().to_string())
        .unwrap_or_else(|_| kind.to_string())
}

/// Splits spans on their received bytes when it can (no decoding, no
/// encoding); `Err` hands the batch back for the decoding path.
fn split_traces_encoded(
    batch: Traces,
    key: RoutingKey,
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Result<Vec<(usize, Traces)>, Traces> {
    if !batch.has_original_encoding() {
        return Err(batch);
    }
    let resource_key = |resource: &ResourceSpans| -> Vec<u8> {
        if key == RoutingKey::Service {
            return service_name(resource.resource.as_ref()).as_bytes().to_vec();
        }
        let mut out = Vec::new();
        write_attributes(&mut out, resource_attributes(resource.resource.as_ref()));
        out
    };
    let wire_key = match key {
        RoutingKey::TraceId => wire::Key::TraceId {
            leading: batch.trace_ids_lead(),
        },
        RoutingKey::Service | RoutingKey::Resource => wire::Key::Resource(&resource_key),
        _ => return Err(batch),
    };
    match wire::split_traces(&batch.protobuf_segments(), &wire_key, owner) {
        Some(wire::Split::Single(only)) => Ok(vec![(only, batch)]),
        // The parts are the batch's own checked fields, re-arranged: no
        // second scan.
        Some(wire::Split::Parts(parts)) => Ok(parts
            .into_iter()
            .map(|(o, segments, spans)| (o, batch.part_of_self(segments, spans)))
            .collect()),
        None => Err(batch),
    }
}

fn split_traces(
    batch: Traces,
    key: RoutingKey,
    names: &[String],
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Vec<(usize, Traces)> {
    let batch = match split_traces_encoded(batch, key, owner) {
        Ok(parts) => return parts,
        Err(batch) => batch,
    };
    let mut owners = Vec::with_capacity(batch.item_count());
    let mut buf = KeyBuf::default();
    for resource in batch.resources() {
        let per_resource = match key {
            RoutingKey::Service => Some(owner(service_name(resource.resource.as_ref()).as_bytes())),
            RoutingKey::Resource => {
                let out = buf.clear();
                write_attributes(out, resource_attributes(resource.resource.as_ref()));
                Some(owner(out))
            }
            _ => None,
        };
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                let o = match per_resource {
                    Some(o) => o,
                    None if key == RoutingKey::Attributes => {
                        let out = buf.clear();
                        let pseudo = |name: &str| match name {
                            "span.kind" => Some(span_kind_name(span.kind)),
                            "span.name" => Some(span.name.clone()),
                            _ => None,
                        };
                        let found = write_routing_attributes(
                            out,
                            names,
                            resource_attributes(resource.resource.as_ref()),
                            &span.attributes,
                            &pseudo,
                        );
                        if found {
                            owner(out)
                        } else {
                            owner(&span.trace_id)
                        }
                    }
                    None => owner(&span.trace_id),
                };
                owners.push(o);
            }
        }
    }
    if let Some(only) = single_owner(&owners) {
        return vec![(only, batch)];
    }
    distribute(batch.into_request(), &owners)
        .into_iter()
        .map(|(o, r)| (o, Traces::new(r)))
        .collect()
}

fn split_logs(
    batch: Logs,
    key: RoutingKey,
    names: &[String],
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Vec<(usize, Logs)> {
    let mut owners = Vec::with_capacity(batch.item_count());
    let mut buf = KeyBuf::default();
    for resource in batch.resources() {
        let service = service_name(resource.resource.as_ref());
        let per_resource = match key {
            RoutingKey::Service => Some(owner(service.as_bytes())),
            RoutingKey::Resource => {
                let out = buf.clear();
                write_attributes(out, resource_attributes(resource.resource.as_ref()));
                Some(owner(out))
            }
            _ => None,
        };
        for scope in &resource.scope_logs {
            for record in &scope.log_records {
                let o = match per_resource {
                    Some(o) => o,
                    None if key == RoutingKey::Attributes => {
                        let out = buf.clear();
                        let found = write_routing_attributes(
                            out,
                            names,
                            resource_attributes(resource.resource.as_ref()),
                            &record.attributes,
                            &|_| None,
                        );
                        if found {
                            owner(out)
                        } else {
                            owner(service.as_bytes())
                        }
                    }
                    // A record without a trace ID goes with its service.
                    None if record.trace_id.is_empty() => owner(service.as_bytes()),
                    None => owner(&record.trace_id),
                };
                owners.push(o);
            }
        }
    }
    if let Some(only) = single_owner(&owners) {
        return vec![(only, batch)];
    }
    distribute(batch.into_request(), &owners)
        .into_iter()
        .map(|(o, r)| (o, Logs::new(r)))
        .collect()
}

/// Splits a payload into parts whose protobuf encoding fits `limit` bytes (a
/// part of one item is sent whatever its size).
pub(crate) fn split_to_fit(payload: Payload, limit: Option<usize>) -> Vec<Payload> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return vec![payload];
    };
    if payload.encoded_len() <= limit {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut pending = vec![payload];
    while let Some(mut part) = pending.pop() {
        let (len, items) = (part.encoded_len(), part.item_count());
        if len <= limit || items <= 1 {
            out.push(part);
            continue;
        }
        let pieces = len.div_ceil(limit).max(2);
        let per_piece = items.div_ceil(pieces).max(1);
        let mut chunks = Vec::new();
        while part.item_count() > 0 {
            chunks.push(part.split_front(per_piece));
        }
        pending.extend(chunks.into_iter().rev());
    }
    out
}
