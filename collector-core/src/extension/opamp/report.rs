//! What the agent tells the server about itself: its description, the
//! running configuration (secrets redacted) and the health of each pipeline
//! and component.

use super::config::OpampConfig;
use super::proto::{self, AgentConfigFile, AgentConfigMap, AgentDescription, ComponentHealth};
use crate::component::control::RunningState;
use crate::component::{BuildInfo, HealthStatus};
use serde_yaml_ng::Value;
use std::collections::HashMap;
use std::time::SystemTime;
use uuid::Uuid;

/// What replaces a secret in the reported configuration (otelcol's text).
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "key_pem",
    "password",
    "token",
    "bearer_token",
    "client_secret",
    "api_key",
    "secret",
];

/// Identifying and non-identifying attributes, as otelcol's extension sends them.
pub(crate) fn agent_description(
    build: &BuildInfo,
    uid: &Uuid,
    config: &OpampConfig,
) -> AgentDescription {
    let identifying = vec![
        proto::string_attribute("service.name", &build.binary),
        proto::string_attribute("service.version", &build.version),
        proto::string_attribute("service.instance.id", &uid.to_string()),
    ];
    let mut detected: Vec<(String, String)> = vec![
        ("host.name".into(), host_name()),
        ("os.type".into(), std::env::consts::OS.to_string()),
        ("host.arch".into(), host_arch().to_string()),
    ];
    for (key, value) in &config.agent_description.non_identifying_attributes {
        match detected.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value.clone(),
            None => detected.push((key.clone(), value.clone())),
        }
    }
    AgentDescription {
        identifying_attributes: identifying,
        non_identifying_attributes: detected
            .iter()
            .map(|(k, v)| proto::string_attribute(k, v))
            .collect(),
    }
}

/// The semantic-convention name of this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        "x86" => "x86",
        other => other,
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The running configuration as the server sees it: YAML under config-map
/// key `""`, with header values and keys named like secrets redacted.
pub(crate) fn effective_config(state: &RunningState) -> Option<proto::EffectiveConfig> {
    let config = state.config.as_ref()?;
    let mut document = config.document.clone();
    redact(&mut document, false);
    let body = serde_yaml_ng::to_string(&document).unwrap_or_default();
    Some(proto::EffectiveConfig {
        config_map: Some(AgentConfigMap {
            config_map: HashMap::from([(
                String::new(),
                AgentConfigFile {
                    body: body.into_bytes(),
                    content_type: "text/yaml".into(),
                },
            )]),
        }),
    })
}

/// Replaces secrets in place; `in_headers` is true inside a `headers` map,
/// where every value is a secret (`Authorization`, API keys).
pub(crate) fn redact(value: &mut Value, in_headers: bool) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let key = key.as_str().unwrap_or("");
                if in_headers || SECRET_KEYS.contains(&key) {
                    if !matches!(child, Value::Null) {
                        *child = Value::String(REDACTED.into());
                    }
                    continue;
                }
                redact(child, key == "headers");
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| redact(v, false)),
        Value::Tagged(tagged) => redact(&mut tagged.value, in_headers),
        _ => {}
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// otelcol's status names.
fn status_name(health: HealthStatus) -> &'static str {
    match health {
        HealthStatus::Starting => "StatusStarting",
        HealthStatus::Ready => "StatusOK",
        HealthStatus::Stopping => "StatusStopping",
        HealthStatus::Failed => "StatusFatalError",
    }
}

/// The collector's health: overall, then per pipeline (`pipeline:traces`)
/// and per component (`receiver:otlp`), each with its last fatal error.
pub(crate) fn health(state: &RunningState) -> ComponentHealth {
    let started = unix_nanos(state.started);
    let ready = state.health == HealthStatus::Ready;
    let mut pipelines = HashMap::new();
    for (pipeline, components) in &state.pipelines {
        let mut children = HashMap::new();
        let mut pipeline_error = String::new();
        for component in components {
            // Failures are keyed `exporter/otlp`; components `exporter:otlp`.
            let failure = component
                .split_once(':')
                .and_then(|(kind, id)| state.failures.get(&format!("{kind}/{id}")))
                .or_else(|| state.failures.get(component));
            let (healthy, last_error, at) = match failure {
                Some(f) => (false, f.error.clone(), unix_nanos(f.at)),
                None => (ready, String::new(), started),
            };
            if !healthy && pipeline_error.is_empty() {
                pipeline_error = last_error.clone();
            }
            children.insert(
                component.clone(),
                ComponentHealth {
                    healthy,
                    start_time_unix_nano: started,
                    last_error,
                    status: if failure.is_some() {
                        "StatusFatalError".into()
                    } else {
                        status_name(state.health).into()
                    },
                    status_time_unix_nano: at,
                    ..Default::default()
                },
            );
        }
        let healthy = ready && children.values().all(|c| c.healthy);
        pipelines.insert(
            pipeline.clone(),
            ComponentHealth {
                healthy,
                start_time_unix_nano: started,
                last_error: pipeline_error,
                status: status_name(if healthy {
                    HealthStatus::Ready
                } else {
                    state.health
                })
                .into(),
                status_time_unix_nano: started,
                component_health_map: children,
                ..Default::default()
            },
        );
    }
    let last_error = state
        .failures
        .iter()
        .next()
        .map(|(id, f)| format!("{id}: {}", f.error))
        .unwrap_or_default();
    ComponentHealth {
        healthy: ready && pipelines.values().all(|p| p.healthy),
        start_time_unix_nano: started,
        last_error,
        status: status_name(state.health).into(),
        status_time_unix_nano: started,
        component_health_map: pipelines,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::control::ComponentFailure;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn secrets_are_redacted() {
        let mut doc: Value = serde_yaml_ng::from_str(
            "exporters:\n  otlp:\n    endpoint: x:4317\n    headers:\n      authorization: Bearer abc\n    tls:\n      key_pem: PRIVATE\n      key_file: /k.pem\n",
        )
        .expect("yaml");
        redact(&mut doc, false);
        let otlp = &doc["exporters"]["otlp"];
        assert_eq!(otlp["endpoint"], Value::String("x:4317".into()));
        assert_eq!(
            otlp["headers"]["authorization"],
            Value::String(REDACTED.into())
        );
        assert_eq!(otlp["tls"]["key_pem"], Value::String(REDACTED.into()));
        assert_eq!(
            otlp["tls"]["key_file"],
            Value::String("/k.pem".into()),
            "a path is no secret"
        );
    }

    #[test]
    fn description_has_identity_and_configured_attributes() {
        let build = BuildInfo {
            binary: "gateway-collector".into(),
            version: "1.2.3".into(),
        };
        let uid = Uuid::now_v7();
        let mut config = OpampConfig::default();
        config
            .agent_description
            .non_identifying_attributes
            .insert("deployment.environment".into(), "prod".into());
        config
            .agent_description
            .non_identifying_attributes
            .insert("os.type".into(), "custom".into());
        let d = agent_description(&build, &uid, &config);
        let id = &d.identifying_attributes;
        assert_eq!(
            proto::find_string(id, "service.name"),
            Some("gateway-collector")
        );
        assert_eq!(proto::find_string(id, "service.version"), Some("1.2.3"));
        assert_eq!(
            proto::find_string(id, "service.instance.id"),
            Some(uid.to_string().as_str())
        );
        let other = &d.non_identifying_attributes;
        assert_eq!(
            proto::find_string(other, "deployment.environment"),
            Some("prod")
        );
        assert_eq!(
            proto::find_string(other, "os.type"),
            Some("custom"),
            "configured wins"
        );
        assert!(proto::find_string(other, "host.name").is_some());
        assert_eq!(proto::find_string(other, "host.arch"), Some(host_arch()));
    }

    #[test]
    fn health_names_the_failed_component_and_its_pipeline() {
        let mut state = RunningState {
            health: HealthStatus::Ready,
            config: Some(Arc::new(crate::config::Config::default())),
            ..Default::default()
        };
        state.pipelines = BTreeMap::from([
            (
                "pipeline:traces".to_string(),
                vec!["receiver:otlp".to_string(), "exporter:otlp/to".to_string()],
            ),
            (
                "pipeline:logs".to_string(),
                vec!["receiver:otlp".to_string()],
            ),
        ]);
        let all_good = health(&state);
        assert!(all_good.healthy);
        assert_eq!(all_good.status, "StatusOK");
        state.health = HealthStatus::Failed;
        state.failures.insert(
            "exporter/otlp/to".into(),
            ComponentFailure {
                error: "disk full".into(),
                at: SystemTime::now(),
            },
        );
        let h = health(&state);
        assert!(!h.healthy);
        assert!(h.last_error.contains("disk full"), "{}", h.last_error);
        let traces = &h.component_health_map["pipeline:traces"];
        assert!(!traces.healthy);
        let exporter = &traces.component_health_map["exporter:otlp/to"];
        assert!(!exporter.healthy);
        assert_eq!(exporter.last_error, "disk full");
        assert_eq!(exporter.status, "StatusFatalError");
    }
}
