//! The otelcol configuration model: `receivers`, `processors`, `exporters`,
//! `extensions` and `service` (pipelines, extensions, telemetry).
//!
//! Loading is two steps. [`load`] merges sources into one YAML value; then
//! [`Config::from_value`] splits it into component sections (kept as YAML for
//! their factories to type-check) and a typed `service` section. Checking
//! components against factories and pipelines happens in `pipeline::graph`.

pub mod duration;
mod error;
pub mod load;
pub mod service;

pub use error::{ConfigError, ConfigErrors, join_path};
pub use load::ConfigSource;
pub use service::{
    LogEncoding, MetricsLevel, PipelineConfig, PipelineId, ServiceConfig, TelemetryConfig,
};

use crate::component::{ComponentId, Kind};
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;

/// A whole collector configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Component sections by kind, each `id -> raw YAML` in file order.
    pub components: BTreeMap<Kind, BTreeMap<ComponentId, Value>>,
    /// The `service` section.
    pub service: ServiceConfig,
    /// The merged document, for reporting the effective config (OpAMP).
    pub document: Value,
}

impl Config {
    /// Splits a merged YAML document into component sections and the service.
    /// Reports every problem found, each with its path.
    pub fn from_value(document: Value) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut config = Config {
            document: document.clone(),
            ..Config::default()
        };
        let Value::Mapping(top) = document else {
            return Err(ConfigError::new("", "the configuration must be a map").into());
        };
        for (key, value) in top {
            let Some(key) = key.as_str() else {
                errors.push(ConfigError::new(
                    "",
                    format!("non-string top-level key {key:?}"),
                ));
                continue;
            };
            if key == "service" {
                match deserialize_at::<ServiceConfig>("service", value) {
                    Ok(service) => config.service = service,
                    Err(e) => errors.push(e),
                }
                continue;
            }
            if key == "connectors" {
                if !matches!(&value, Value::Null)
                    && value.as_mapping().is_none_or(|m| !m.is_empty())
                {
                    errors.push(ConfigError::new(
                        "connectors",
                        "connectors are not supported by this collector",
                    ));
                }
                continue;
            }
            let Some(kind) = Kind::from_section(key) else {
                errors.push(ConfigError::new(
                    key,
                    "unknown top-level key (expected receivers, processors, exporters, extensions, connectors or service)",
                ));
                continue;
            };
            let section = match value {
                Value::Null => continue,
                Value::Mapping(m) => m,
                _ => {
                    errors.push(ConfigError::new(
                        key,
                        "expected a map of component id to settings",
                    ));
                    continue;
                }
            };
            let ids = config.components.entry(kind).or_default();
            for (id, settings) in section {
                let id_text = id
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{id:?}"));
                match id_text.parse::<ComponentId>() {
                    Ok(id) => {
                        ids.insert(id, settings);
                    }
                    Err(e) => errors.push(ConfigError::new(format!("{key}.{id_text}"), e)),
                }
            }
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The raw settings of a component.
    pub fn component(&self, kind: Kind, id: &ComponentId) -> Option<&Value> {
        self.components.get(&kind).and_then(|ids| ids.get(id))
    }

    /// The effective configuration as YAML text.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.document).unwrap_or_default()
    }
}

/// Deserializes a YAML value into `T`, reporting the failing field's full path.
/// A null value (`batch:` with nothing after it) reads as an empty map, so
/// components with all-default settings can be written bare.
pub fn deserialize_at<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, ConfigError> {
    let value = match value {
        Value::Null => Value::Mapping(Default::default()),
        other => other,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let inner = if inner == "." { String::new() } else { inner };
        ConfigError::new(join_path(path, &inner), e.into_inner().to_string())
    })
}

/// Loads a configuration from sources and overrides, with the process environment.
pub fn load(sources: &[ConfigSource], overrides: &[String]) -> Result<Config, ConfigErrors> {
    let value = load::load_sources(sources, overrides, &|k| std::env::var(k).ok())?;
    Config::from_value(value)
}
