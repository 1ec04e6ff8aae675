//! Turning config sources into one YAML document: read files, merge them the
//! way otelcol merges several `--config` flags (maps merge, later wins, lists
//! are replaced), apply `--set` overrides, then expand `${env:VAR}` references.

use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

/// Where a config document came from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A YAML file (`--config path` or `--config file:path`).
    File(std::path::PathBuf),
    /// YAML text, e.g. an embedded default or an OpAMP remote config
    /// (`--config yaml:...`). The label names it in errors.
    Text {
        /// Name shown in errors.
        label: String,
        /// The YAML document.
        yaml: String,
    },
}

impl ConfigSource {
    /// Interprets a `--config` argument: `yaml:<inline>`, `file:<path>` or a path.
    pub fn from_arg(arg: &str) -> Self {
        if let Some(yaml) = arg.strip_prefix("yaml:") {
            ConfigSource::Text {
                label: "--config yaml:".into(),
                yaml: yaml.into(),
            }
        } else {
            ConfigSource::File(arg.strip_prefix("file:").unwrap_or(arg).into())
        }
    }

    fn read(&self) -> Result<(String, String), ConfigError> {
        match self {
            ConfigSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
                })?;
                Ok((path.display().to_string(), text))
            }
            ConfigSource::Text { label, yaml } => Ok((label.clone(), yaml.clone())),
        }
    }
}

/// Parses one YAML document into a value; an empty document is an empty map.
pub fn parse_yaml(label: &str, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::new(label, format!("invalid YAML: {e}")))?;
    match value {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(value),
        _ => Err(ConfigError::new(label, "the top level must be a map")),
    }
}

/// Reads, merges and expands config sources and `--set` overrides.
pub fn load_sources(
    sources: &[ConfigSource],
    overrides: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, ConfigError> {
    let mut merged = Value::Mapping(Mapping::new());
    for source in sources {
        let (label, text) = source.read()?;
        merge(&mut merged, parse_yaml(&label, &text)?);
    }
    for set in overrides {
        apply_set(&mut merged, set)?;
    }
    expand_env(&mut merged, "", env)?;
    Ok(merged)
}

/// Merges `overlay` into `base`: maps recursively, anything else replaced.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies one `--set key.path=value` (or `key::path=value`) override. The value
/// is parsed as YAML, so `--set processors.batch.send_batch_size=100` sets an int.
pub fn apply_set(root: &mut Value, set: &str) -> Result<(), ConfigError> {
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| ConfigError::new("--set", format!("{set:?}: expected key.path=value")))?;
    let parts: Vec<&str> = if key.contains("::") {
        key.split("::").collect()
    } else {
        key.split('.').collect()
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new(
            "--set",
            format!("{set:?}: empty key segment"),
        ));
    }
    let value: Value = if raw.is_empty() {
        Value::Null
    } else {
        serde_yaml_ng::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
    };
    let mut node = root;
    for part in &parts {
        if !matches!(node, Value::Mapping(_)) {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            unreachable!("just made a mapping")
        };
        node = map
            .entry(Value::String((*part).to_string()))
            .or_insert(Value::Null);
    }
    merge(node, value);
    Ok(())
}

/// Expands `${env:VAR}`, `${env:VAR:-default}` and `${VAR}` in every string
/// scalar; `$$` is a literal `$`. A scalar that is exactly one reference takes
/// the variable's value parsed as YAML (so `port: ${env:PORT}` is an int), as
/// otelcol's confmap does. Unset variables without a default expand to "".
pub fn expand_env(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            let whole_reference =
                s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            let expanded = expand_str(s, env).map_err(|m| ConfigError::new(path, m))?;
            *value = if whole_reference {
                match serde_yaml_ng::from_str::<Value>(&expanded) {
                    Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
                    _ => Value::String(expanded),
                }
            } else {
                Value::String(expanded)
            };
        }
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let name = match key {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                expand_env(child, &super::join_path(path, &name), env)?;
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                expand_env(child, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env)?,
        _ => {}
    }
    Ok(())
}

/// Expands references inside one string.
pub fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            out.push_str(&resolve(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let name_and_default = match reference.split_once(':') {
        Some(("env", rest)) => rest,
        Some((scheme, _))
            if !scheme.contains('-') && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            return Err(format!(
                "unsupported config provider {scheme:?} in ${{{reference}}} (supported: env)"
            ));
        }
        _ => reference,
    };
    let (name, default) = match name_and_default.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (name_and_default, None),
    };
    let valid_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid_name {
        return Err(format!(
            "invalid environment variable name {name:?} in ${{{reference}}}"
        ));
    }
    match env(name) {
        Some(value) if !value.is_empty() || default.is_none() => Ok(value),
        _ => match default {
            Some(default) => Ok(default.to_string()),
            None => {
                tracing::warn!(
                    variable = name,
                    "environment variable is not set; using an empty string"
                );
                Ok(String::new())
            }
        },
    }
}

/// Reads a config file from disk for `validate`, with no overrides.
pub fn load_file(path: &Path) -> Result<Value, ConfigError> {
    load_sources(&[ConfigSource::File(path.to_path_buf())], &[], &|k| {
        std::env::var(k).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "HOST" => Some("gw.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        let cases = [
            ("${env:HOST}:${env:PORT}", "gw.local:4317"),
            ("${HOST}", "gw.local"),
            ("${env:MISSING:-fallback}", "fallback"),
            ("${env:EMPTY:-fallback}", "fallback"),
            ("${env:MISSING}", ""),
            ("cost $$5", "cost $5"),
            ("no refs", "no refs"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_str(input, &env).as_deref(), Ok(want), "{input}");
        }
        assert!(expand_str("${env:HOST", &env).is_err());
        assert!(expand_str("${file:/etc/x}", &env).is_err());
    }

    #[test]
    fn whole_reference_is_typed() {
        let mut v: Value =
            serde_yaml_ng::from_str("port: ${env:PORT}\nname: x-${env:PORT}").unwrap_or_default();
        expand_env(&mut v, "", &env).unwrap_or_default();
        assert_eq!(v["port"], Value::Number(4317.into()));
        assert_eq!(v["name"], Value::String("x-4317".into()));
    }

    #[test]
    fn later_files_win_on_maps_and_replace_lists() {
        let mut a = parse_yaml("a", "x: {k: 1, keep: true}\nl: [1, 2]").unwrap_or_default();
        let b = parse_yaml("b", "x: {k: 2}\nl: [3]").unwrap_or_default();
        merge(&mut a, b);
        assert_eq!(a["x"]["k"], Value::Number(2.into()));
        assert_eq!(a["x"]["keep"], Value::Bool(true));
        assert_eq!(
            a["l"],
            serde_yaml_ng::from_str::<Value>("[3]").unwrap_or_default()
        );
    }

    #[test]
    fn set_overrides_paths() {
        let mut v = parse_yaml("a", "processors: {batch: {timeout: 1s}}").unwrap_or_default();
        apply_set(&mut v, "processors.batch.send_batch_size=100").unwrap_or_default();
        apply_set(&mut v, "exporters::otlp/to::endpoint=gw:4317").unwrap_or_default();
        assert_eq!(
            v["processors"]["batch"]["send_batch_size"],
            Value::Number(100.into())
        );
        assert_eq!(
            v["processors"]["batch"]["timeout"],
            Value::String("1s".into())
        );
        assert_eq!(
            v["exporters"]["otlp/to"]["endpoint"],
            Value::String("gw:4317".into())
        );
        assert!(apply_set(&mut v, "no-equals").is_err());
    }
}
