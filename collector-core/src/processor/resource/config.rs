//! The `resource` processor's settings and their compilation into actions.

use super::actions::{Action, ContextKey, ConvertType, Source};
use crate::config::ConfigError;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use regex::Regex;
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

/// The actions otelcol's attribute processors know, in the order they list them.
const ACTIONS: &str = "insert, update, upsert, delete, hash, extract, convert";

/// Nesting depth accepted in a literal `value`.
const MAX_VALUE_DEPTH: usize = 16;

/// Settings of the `resource` processor.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// Actions applied in order to every resource's attributes.
    pub attributes: Vec<AttributeActionConfig>,
}

/// One entry of `attributes`, as written in YAML.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeActionConfig {
    /// The attribute acted on.
    pub key: String,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or `convert`
    /// (case-insensitive).
    pub action: String,
    /// Literal value for insert/update/upsert.
    pub value: Option<Yaml>,
    /// Copy the value of this attribute of the same resource.
    pub from_attribute: String,
    /// Take the value from the client: `metadata.<key>` or `client.address`.
    pub from_context: String,
    /// Regex: keys to delete or hash, or the named groups to extract.
    pub pattern: String,
    /// `int`, `double` or `string`, for `convert`.
    pub converted_type: String,
}

impl ResourceConfig {
    /// Checks every action and compiles them; error paths are relative to the
    /// component (`attributes[2].pattern`).
    pub(super) fn compile(&self) -> Result<Vec<Action>, ConfigError> {
        if self.attributes.is_empty() {
            return Err(ConfigError::new(
                "attributes",
                "at least one action is required",
            ));
        }
        self.attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.compile()
                    .map_err(|e| e.under(&format!("attributes[{i}]")))
            })
            .collect()
    }
}

impl AttributeActionConfig {
    fn compile(&self) -> Result<Action, ConfigError> {
        let action = self.action.to_ascii_lowercase();
        match action.as_str() {
            "insert" | "update" | "upsert" => {
                let key = self.required_key(&action)?;
                self.unused_pattern(&action)?;
                self.unused_converted_type(&action)?;
                let source = self.source(&action)?;
                Ok(match action.as_str() {
                    "insert" => Action::Insert { key, source },
                    "update" => Action::Update { key, source },
                    _ => Action::Upsert { key, source },
                })
            }
            "delete" | "hash" => {
                self.no_source(&action)?;
                self.unused_converted_type(&action)?;
                if self.key.is_empty() && self.pattern.is_empty() {
                    return Err(ConfigError::new(
                        "",
                        format!("action {action} needs key and/or pattern"),
                    ));
                }
                let key = (!self.key.is_empty()).then(|| self.key.clone());
                let pattern = if self.pattern.is_empty() {
                    None
                } else {
                    Some(self.regex()?)
                };
                Ok(if action == "delete" {
                    Action::Delete { key, pattern }
                } else {
                    Action::Hash { key, pattern }
                })
            }
            "extract" => {
                let key = self.required_key(&action)?;
                self.no_source(&action)?;
                self.unused_converted_type(&action)?;
                if self.pattern.is_empty() {
                    return Err(ConfigError::new(
                        "pattern",
                        "required for action extract (a regex with named groups)",
                    ));
                }
                let pattern = self.regex()?;
                let names: Vec<Option<&str>> = pattern.capture_names().skip(1).collect();
                if names.iter().all(Option::is_none) {
                    return Err(ConfigError::new(
                        "pattern",
                        "has no named groups ((?P<name>...)) to extract",
                    ));
                }
                if let Some(i) = names.iter().position(Option::is_none) {
                    return Err(ConfigError::new(
                        "pattern",
                        format!(
                            "group {} is unnamed; every group of an extract pattern must be named (use (?:...) for grouping)",
                            i + 1
                        ),
                    ));
                }
                Ok(Action::Extract { key, pattern })
            }
            "convert" => {
                let key = self.required_key(&action)?;
                self.no_source(&action)?;
                self.unused_pattern(&action)?;
                let to = match self.converted_type.to_ascii_lowercase().as_str() {
                    "int" => ConvertType::Int,
                    "double" => ConvertType::Double,
                    "string" => ConvertType::String,
                    "" => {
                        return Err(ConfigError::new(
                            "converted_type",
                            "required for action convert (int, double or string)",
                        ));
                    }
                    other => {
                        return Err(ConfigError::new(
                            "converted_type",
                            format!("unknown type {other:?} (expected int, double or string)"),
                        ));
                    }
                };
                Ok(Action::Convert { key, to })
            }
            "" => Err(ConfigError::new(
                "action",
                format!("missing (expected one of {ACTIONS})"),
            )),
            other => Err(ConfigError::new(
                "action",
                format!("unknown action {other:?} (expected one of {ACTIONS})"),
            )),
        }
    }

    fn required_key(&self, action: &str) -> Result<String, ConfigError> {
        if self.key.is_empty() {
            return Err(ConfigError::new(
                "key",
                format!("required for action {action}"),
            ));
        }
        Ok(self.key.clone())
    }

    fn unused_pattern(&self, action: &str) -> Result<(), ConfigError> {
        if self.pattern.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(
                "pattern",
                format!("not used by action {action}"),
            ))
        }
    }

    fn unused_converted_type(&self, action: &str) -> Result<(), ConfigError> {
        if self.converted_type.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(
                "converted_type",
                format!("only used by action convert, not {action}"),
            ))
        }
    }

    fn no_source(&self, action: &str) -> Result<(), ConfigError> {
        let field = if self.value.is_some() {
            "value"
        } else if !self.from_attribute.is_empty() {
            "from_attribute"
        } else if !self.from_context.is_empty() {
            "from_context"
        } else {
            return Ok(());
        };
        Err(ConfigError::new(
            field,
            format!("not used by action {action}"),
        ))
    }

    fn regex(&self) -> Result<Regex, ConfigError> {
        Regex::new(&self.pattern).map_err(|e| {
            ConfigError::new("pattern", format!("invalid regex {:?}: {e}", self.pattern))
        })
    }

    fn source(&self, action: &str) -> Result<Source, ConfigError> {
        let given = usize::from(self.value.is_some())
            + usize::from(!self.from_attribute.is_empty())
            + usize::from(!self.from_context.is_empty());
        if given != 1 {
            return Err(ConfigError::new(
                "",
                format!(
                    "action {action} needs exactly one of value, from_attribute, from_context ({given} given)"
                ),
            ));
        }
        if let Some(value) = &self.value {
            return literal(value, 0)
                .map(Source::Literal)
                .map_err(|message| ConfigError::new("value", message));
        }
        if !self.from_attribute.is_empty() {
            return Ok(Source::Attribute(self.from_attribute.clone()));
        }
        context_key(&self.from_context)
            .map(Source::Context)
            .map_err(|message| ConfigError::new("from_context", message))
    }
}

fn context_key(text: &str) -> Result<ContextKey, String> {
    if text == "client.address" {
        return Ok(ContextKey::ClientAddress);
    }
    if text.starts_with("auth.") {
        return Err(format!(
            "{text:?}: authenticator attributes are not supported by this collector (expected metadata.<key> or client.address)"
        ));
    }
    // A bare key is a metadata key, as otelcol keeps for backwards compatibility.
    let key = text.strip_prefix("metadata.").unwrap_or(text);
    if key.is_empty() {
        return Err(format!(
            "{text:?} names no metadata key (expected metadata.<key> or client.address)"
        ));
    }
    Ok(ContextKey::Metadata(key.to_ascii_lowercase()))
}

/// A YAML value as an attribute value.
fn literal(value: &Yaml, depth: usize) -> Result<AnyValue, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("nested deeper than {MAX_VALUE_DEPTH} levels"));
    }
    let value = match value {
        Yaml::String(s) => Value::StringValue(s.clone()),
        Yaml::Bool(b) => Value::BoolValue(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::IntValue(i)
            } else if let Some(f) = n.as_f64() {
                Value::DoubleValue(f)
            } else {
                return Err(format!("number {n} does not fit a 64-bit integer or float"));
            }
        }
        Yaml::Sequence(items) => Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|v| literal(v, depth + 1))
                .collect::<Result<_, _>>()?,
        }),
        Yaml::Mapping(map) => {
            let mut values = Vec::with_capacity(map.len());
            for (k, v) in map {
                let Some(key) = k.as_str() else {
                    return Err(format!("map key {k:?} is not a string"));
                };
                values.push(KeyValue {
                    key: key.to_string(),
                    value: Some(literal(v, depth + 1)?),
                    ..Default::default()
                });
            }
            Value::KvlistValue(KeyValueList { values })
        }
        // Inside a list or map, as otelcol's FromRaw: an empty value.
        Yaml::Null => return Ok(AnyValue { value: None }),
        Yaml::Tagged(tagged) => return literal(&tagged.value, depth),
    };
    Ok(AnyValue { value: Some(value) })
}
