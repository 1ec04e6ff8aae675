//! Checks a config against the factories and produces a [`Plan`]: every
//! component's parsed config, and which pipelines use it. Reports all
//! problems at once, each with its YAML path.

use crate::component::{ComponentId, Factories, Kind, ParsedConfig};
use crate::config::{Config, ConfigError, ConfigErrors, PipelineConfig, PipelineId};
use crate::pdata::Signal;
use std::collections::BTreeMap;

/// A configuration that passed every check, ready to build.
#[derive(Debug)]
pub struct Plan {
    /// Parsed configs of the components that are used, by kind and id.
    pub configs: BTreeMap<(Kind, ComponentId), ParsedConfig>,
    /// Pipelines, in id order.
    pub pipelines: Vec<(PipelineId, PipelineConfig)>,
    /// Extensions to run, in order.
    pub extensions: Vec<ComponentId>,
}

/// Each pipeline's components as otelcol's status reporting names them
/// (`receiver:otlp`, `processor:batch`, `exporter:otlp/to`), in data order;
/// extensions under the key `extensions`.
pub fn components_by_pipeline(plan: &Plan) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (id, pipeline) in &plan.pipelines {
        let named = |kind: &str, ids: &[ComponentId]| {
            ids.iter()
                .map(|id| format!("{kind}:{id}"))
                .collect::<Vec<_>>()
        };
        let mut components = named("receiver", &pipeline.receivers);
        components.extend(named("processor", &pipeline.processors));
        components.extend(named("exporter", &pipeline.exporters));
        out.insert(format!("pipeline:{id}"), components);
    }
    if !plan.extensions.is_empty() {
        out.insert(
            "extensions".to_string(),
            plan.extensions
                .iter()
                .map(|id| format!("extension:{id}"))
                .collect(),
        );
    }
    out
}

fn supported(factories: &Factories, kind: Kind) -> String {
    factories.names(kind).join(", ")
}

/// Parses every defined component with its factory and checks the pipelines.
pub fn plan(config: &Config, factories: &Factories) -> Result<Plan, ConfigErrors> {
    let mut errors = Vec::new();
    let mut configs = BTreeMap::new();

    for (kind, ids) in &config.components {
        for (id, raw) in ids {
            let path = format!("{}.{}", kind.section(), id);
            let parsed = match kind {
                Kind::Receiver => factories
                    .get_receiver(id.type_name())
                    .map(|f| f.parse(&path, raw)),
                Kind::Processor => factories
                    .get_processor(id.type_name())
                    .map(|f| f.parse(&path, raw)),
                Kind::Exporter => factories
                    .get_exporter(id.type_name())
                    .map(|f| f.parse(&path, raw)),
                Kind::Extension => factories
                    .get_extension(id.type_name())
                    .map(|f| f.parse(&path, raw)),
            };
            match parsed {
                None => errors.push(ConfigError::new(
                    path,
                    format!(
                        "unknown {kind} type {:?}; this collector supports: {}",
                        id.type_name(),
                        supported(factories, *kind)
                    ),
                )),
                Some(Err(e)) => errors.push(e),
                Some(Ok(parsed)) => {
                    configs.insert((*kind, id.clone()), parsed);
                }
            }
        }
    }

    let defined = |kind: Kind, id: &ComponentId| {
        config
            .components
            .get(&kind)
            .is_some_and(|ids| ids.contains_key(id))
    };

    for (i, id) in config.service.extensions.iter().enumerate() {
        if !defined(Kind::Extension, id) {
            errors.push(ConfigError::new(
                format!("service.extensions[{i}]"),
                format!(
                    "references extension {:?} which is not configured under extensions",
                    id.to_string()
                ),
            ));
        }
    }

    if config.service.pipelines.is_empty() {
        errors.push(ConfigError::new(
            "service.pipelines",
            "at least one pipeline is required",
        ));
    }

    for (pid, pipeline) in &config.service.pipelines {
        let base = format!("service.pipelines.{pid}");
        if pipeline.receivers.is_empty() {
            errors.push(ConfigError::new(
                format!("{base}.receivers"),
                "must have at least one receiver",
            ));
        }
        if pipeline.exporters.is_empty() {
            errors.push(ConfigError::new(
                format!("{base}.exporters"),
                "must have at least one exporter",
            ));
        }
        let lists = [
            (Kind::Receiver, "receivers", &pipeline.receivers),
            (Kind::Processor, "processors", &pipeline.processors),
            (Kind::Exporter, "exporters", &pipeline.exporters),
        ];
        for (kind, field, ids) in lists {
            for (i, id) in ids.iter().enumerate() {
                let path = format!("{base}.{field}[{i}]");
                if ids[..i].contains(id) {
                    errors.push(ConfigError::new(
                        path,
                        format!("references {kind} {:?} more than once", id.to_string()),
                    ));
                    continue;
                }
                if !defined(kind, id) {
                    errors.push(ConfigError::new(
                        path,
                        format!(
                            "references {kind} {:?} which is not configured under {}",
                            id.to_string(),
                            kind.section()
                        ),
                    ));
                    continue;
                }
                let signals: Option<&[Signal]> = match kind {
                    Kind::Receiver => factories.get_receiver(id.type_name()).map(|f| f.signals()),
                    Kind::Processor => factories.get_processor(id.type_name()).map(|f| f.signals()),
                    Kind::Exporter => factories.get_exporter(id.type_name()).map(|f| f.signals()),
                    Kind::Extension => None,
                };
                if let Some(signals) = signals
                    && !signals.contains(&pid.signal)
                {
                    let list: Vec<&str> = signals.iter().map(|s| s.as_str()).collect();
                    errors.push(ConfigError::new(
                        path,
                        format!(
                            "{kind} {:?} does not support {}; it supports: {}",
                            id.to_string(),
                            pid.signal,
                            list.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Plan {
        configs,
        pipelines: config
            .service
            .pipelines
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        extensions: config.service.extensions.clone(),
    })
}
