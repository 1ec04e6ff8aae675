//! Attribute actions, compiled from the config and applied to one attribute list.

use crate::pdata::ClientInfo;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::Regex;
use sha2::{Digest, Sha256};

/// Nesting depth beyond which arrays and maps render as `null` in a string form.
const MAX_STRING_DEPTH: usize = 32;

/// One compiled action.
#[derive(Clone, Debug)]
pub(super) enum Action {
    /// Adds `key` when absent.
    Insert { key: String, source: Source },
    /// Replaces `key` when present.
    Update { key: String, source: Source },
    /// Sets `key` either way.
    Upsert { key: String, source: Source },
    /// Removes `key` and/or every key matching `pattern`.
    Delete {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    /// Replaces the value of `key` and/or every key matching `pattern` with its SHA-256.
    Hash {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    /// Upserts each named group of `pattern` matched against the string value of `key`.
    Extract { key: String, pattern: Regex },
    /// Converts the value of `key`.
    Convert { key: String, to: ConvertType },
}

/// Where an inserted value comes from.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// A literal from the config.
    Literal(AnyValue),
    /// Another attribute of the same resource.
    Attribute(String),
    /// The client that sent the batch.
    Context(ContextKey),
}

/// A piece of client information (`from_context`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ContextKey {
    /// `metadata.<key>` (or a bare `<key>`, as otelcol still accepts):
    /// request metadata (lower-case key).
    Metadata(String),
    /// `client.address`: the client's IP address.
    ClientAddress,
}

/// Target type of `convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConvertType {
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Double,
    /// String form.
    String,
}

/// Applies `actions` in order to one resource's attributes.
pub(super) fn apply(actions: &[Action], attributes: &mut Vec<KeyValue>, client: &ClientInfo) {
    for action in actions {
        match action {
            Action::Insert { key, source } => {
                if position(attributes, key).is_none()
                    && let Some(value) = resolve(source, attributes, client)
                {
                    attributes.push(key_value(key, value));
                }
            }
            Action::Update { key, source } => {
                if let Some(at) = position(attributes, key)
                    && let Some(value) = resolve(source, attributes, client)
                {
                    attributes[at].value = Some(value);
                }
            }
            Action::Upsert { key, source } => {
                if let Some(value) = resolve(source, attributes, client) {
                    upsert(attributes, key, value);
                }
            }
            Action::Delete { key, pattern } => {
                attributes.retain(|kv| !selected(kv, key.as_deref(), pattern.as_ref()));
            }
            Action::Hash { key, pattern } => {
                for kv in attributes.iter_mut() {
                    if selected(kv, key.as_deref(), pattern.as_ref())
                        && let Some(value) = &mut kv.value
                    {
                        hash_in_place(value);
                    }
                }
            }
            Action::Extract { key, pattern } => extract(attributes, key, pattern),
            Action::Convert { key, to } => {
                if let Some(at) = position(attributes, key)
                    && let Some(value) = &mut attributes[at].value
                {
                    convert(value, *to);
                }
            }
        }
    }
}

fn position(attributes: &[KeyValue], key: &str) -> Option<usize> {
    attributes.iter().position(|kv| kv.key == key)
}

fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

fn upsert(attributes: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match position(attributes, key) {
        Some(at) => attributes[at].value = Some(value),
        None => attributes.push(key_value(key, value)),
    }
}

fn selected(kv: &KeyValue, key: Option<&str>, pattern: Option<&Regex>) -> bool {
    key.is_some_and(|k| kv.key == k) || pattern.is_some_and(|p| p.is_match(&kv.key))
}

fn string_value(text: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(text)),
    }
}

/// The value a source yields for this resource, if any.
fn resolve(source: &Source, attributes: &[KeyValue], client: &ClientInfo) -> Option<AnyValue> {
    match source {
        Source::Literal(value) => Some(value.clone()),
        Source::Attribute(from) => {
            position(attributes, from).and_then(|at| attributes[at].value.clone())
        }
        Source::Context(ContextKey::ClientAddress) => {
            client.addr.map(|addr| string_value(addr.ip().to_string()))
        }
        Source::Context(ContextKey::Metadata(key)) => {
            // As otelcol: several values are joined with ';'.
            let values = client.get(key);
            (!values.is_empty()).then(|| string_value(values.join(";")))
        }
    }
}

/// SHA-256 (lower-case hex) of the value's bytes, as otelcol hashes: a
/// string's UTF-8, an int or double as 8 little-endian bytes, a bool as one
/// byte. Other types (bytes, arrays, maps, empty) become an empty string, as
/// in otelcol.
fn hash_in_place(value: &mut AnyValue) {
    let digest = match &value.value {
        Some(Value::StringValue(s)) => Sha256::digest(s.as_bytes()),
        Some(Value::BoolValue(b)) => Sha256::digest([u8::from(*b)]),
        Some(Value::IntValue(i)) => Sha256::digest(i.to_le_bytes()),
        Some(Value::DoubleValue(d)) => Sha256::digest(d.to_bits().to_le_bytes()),
        _ => {
            value.value = Some(Value::StringValue(String::new()));
            return;
        }
    };
    value.value = Some(Value::StringValue(hex::encode(digest)));
}

fn extract(attributes: &mut Vec<KeyValue>, key: &str, pattern: &Regex) {
    let Some(at) = position(attributes, key) else {
        return;
    };
    let Some(Value::StringValue(text)) =
        attributes[at].value.as_ref().and_then(|v| v.value.as_ref())
    else {
        return;
    };
    let Some(captures) = pattern.captures(text) else {
        return;
    };
    let found: Vec<(String, String)> = pattern
        .capture_names()
        .enumerate()
        .filter_map(|(i, name)| {
            let name = name?;
            let text = captures.get(i).map_or("", |m| m.as_str());
            Some((name.to_string(), text.to_string()))
        })
        .collect();
    for (name, text) in found {
        upsert(attributes, &name, string_value(text));
    }
}

/// Converts in place; a value that does not convert stays unchanged.
fn convert(value: &mut AnyValue, to: ConvertType) {
    let converted = match (to, &value.value) {
        (ConvertType::Int, Some(Value::DoubleValue(d))) => Value::IntValue(*d as i64),
        (ConvertType::Int, Some(Value::BoolValue(b))) => Value::IntValue(i64::from(*b)),
        (ConvertType::Int, Some(Value::StringValue(s))) => match s.parse::<i64>() {
            Ok(i) => Value::IntValue(i),
            Err(_) => return,
        },
        (ConvertType::Double, Some(Value::IntValue(i))) => Value::DoubleValue(*i as f64),
        (ConvertType::Double, Some(Value::BoolValue(b))) => {
            Value::DoubleValue(if *b { 1.0 } else { 0.0 })
        }
        (ConvertType::Double, Some(Value::StringValue(s))) => match s.parse::<f64>() {
            Ok(d) => Value::DoubleValue(d),
            Err(_) => return,
        },
        (ConvertType::String, Some(Value::StringValue(_))) => return,
        (ConvertType::String, Some(_)) => Value::StringValue(as_string(value)),
        _ => return,
    };
    value.value = Some(converted);
}

/// The string form of a value, as otelcol's `AsString` renders it: numbers in
/// decimal, bytes in base64, arrays and maps as JSON.
pub(super) fn as_string(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_double(*d),
        Some(Value::BytesValue(b)) => base64_std(b),
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_)) => to_json(value, 0).to_string(),
        Some(Value::StringValueStrindex(_)) | None => String::new(),
    }
}

fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d == f64::INFINITY {
        "+Inf".into()
    } else if d == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        d.to_string()
    }
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn to_json(value: &AnyValue, depth: usize) -> serde_json::Value {
    use serde_json::Value as Json;
    if depth > MAX_STRING_DEPTH {
        return Json::Null;
    }
    match &value.value {
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Json::String(format_double(*d)), Json::Number),
        Some(Value::BytesValue(b)) => Json::String(base64_std(b)),
        Some(Value::ArrayValue(a)) => {
            Json::Array(a.values.iter().map(|v| to_json(v, depth + 1)).collect())
        }
        Some(Value::KvlistValue(list)) => Json::Object(
            list.values
                .iter()
                .map(|kv| {
                    let v = kv
                        .value
                        .as_ref()
                        .map_or(Json::Null, |v| to_json(v, depth + 1));
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(_)) | None => Json::Null,
    }
}
