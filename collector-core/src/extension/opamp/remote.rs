//! Turning a server's `AgentRemoteConfig` into a collector configuration the
//! service can apply, and keeping the last applied one across restarts.
//!
//! The rule for the extension's own settings: a remote config cannot change
//! how this collector reaches its OpAMP server, since the connection that
//! delivers the config would change under it. When the remote config leaves
//! the extension out, the running extension's settings are kept (and it stays
//! in `service.extensions`); when it carries them, they must equal the
//! running ones (as reported, redacted or not), else the config is refused.

use super::identity::write_atomically;
use super::proto::AgentRemoteConfig;
use super::report;
use crate::config::load::{self, parse_yaml};
use prost::Message;
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The file under `state_directory` holding the last applied remote config
/// (the server's `AgentRemoteConfig` message, protobuf).
pub(crate) const REMOTE_CONFIG_FILE: &str = "remote_config.pb";

/// What the source is called in error messages.
pub(crate) const LABEL: &str = "opamp remote config";

/// The config's hash: the server's, or SHA-256 of the config map when the
/// server sent none.
pub(crate) fn hash_of(remote: &AgentRemoteConfig) -> Vec<u8> {
    if !remote.config_hash.is_empty() {
        return remote.config_hash.clone();
    }
    let mut hasher = Sha256::new();
    if let Some(map) = &remote.config {
        let mut keys: Vec<&String> = map.config_map.keys().collect();
        keys.sort();
        for key in keys {
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(&map.config_map[key].body);
            hasher.update([0]);
        }
    }
    hasher.finalize().to_vec()
}

/// The collector YAML to apply: the config-map files merged (key `""`, the
/// whole config as OllyScale sends it, first; others in key order), with the
/// opamp extension `running_id` kept as `running_section` says.
pub(crate) fn prepare(
    remote: &AgentRemoteConfig,
    running_id: &str,
    running_section: &Value,
) -> Result<String, String> {
    let files = remote
        .config
        .as_ref()
        .map(|m| &m.config_map)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| "the remote config has no files".to_string())?;
    let mut keys: Vec<&String> = files.keys().collect();
    keys.sort();
    let mut merged = Value::Mapping(Mapping::new());
    for key in keys {
        let label = if key.is_empty() {
            LABEL.to_string()
        } else {
            format!("{LABEL} {key:?}")
        };
        let text = std::str::from_utf8(&files[key].body)
            .map_err(|e| format!("{label}: not UTF-8 text: {e}"))?;
        let document = parse_yaml(&label, text).map_err(|e| e.to_string())?;
        load::merge(&mut merged, document);
    }
    keep_own_settings(&mut merged, running_id, running_section)?;
    serde_yaml_ng::to_string(&merged).map_err(|e| format!("{LABEL}: {e}"))
}

fn keep_own_settings(
    document: &mut Value,
    running_id: &str,
    running_section: &Value,
) -> Result<(), String> {
    let Value::Mapping(top) = document else {
        return Err(format!("{LABEL}: the top level must be a map"));
    };
    let extensions = top
        .entry(Value::String("extensions".into()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if matches!(extensions, Value::Null) {
        *extensions = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(extensions) = extensions else {
        return Err("extensions: expected a map of component id to settings".into());
    };
    let key = Value::String(running_id.to_string());
    if let Some(given) = extensions.get(&key) {
        let mut expanded = given.clone();
        load::expand_env(&mut expanded, "", &|k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?;
        let mut redacted = running_section.clone();
        report::redact(&mut redacted, false);
        let same = |a: &Value, b: &Value| normalise(a) == normalise(b);
        if !same(&expanded, running_section) && !same(&expanded, &redacted) {
            return Err(format!(
                "extensions.{running_id}: the OpAMP extension's own settings cannot be changed by a remote config \
                 (the connection delivering it would change under it); change them in the collector's local \
                 config, or leave the section out to keep the running one"
            ));
        }
    }
    // The running settings, with their secrets (the server saw them redacted).
    extensions.insert(key, running_section.clone());

    let service = top
        .entry(Value::String("service".into()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if matches!(service, Value::Null) {
        *service = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(service) = service else {
        return Err("service: expected a map".into());
    };
    let listed = service
        .entry(Value::String("extensions".into()))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if matches!(listed, Value::Null) {
        *listed = Value::Sequence(Vec::new());
    }
    let Value::Sequence(listed) = listed else {
        return Err("service.extensions: expected a list of extension ids".into());
    };
    if !listed.iter().any(|v| v.as_str() == Some(running_id)) {
        listed.push(Value::String(running_id.to_string()));
    }
    Ok(())
}

/// A null section and an empty map mean the same (`opamp:` vs `opamp: {}`).
fn normalise(value: &Value) -> Value {
    match value {
        Value::Null => Value::Mapping(Mapping::new()),
        other => other.clone(),
    }
}

/// Keeps `remote` as the last applied remote config.
pub(crate) fn store(dir: &Path, remote: &AgentRemoteConfig) -> Result<(), String> {
    write_atomically(&dir.join(REMOTE_CONFIG_FILE), &remote.encode_to_vec())
}

/// The last applied remote config, if one was kept. A damaged file is
/// reported and ignored.
pub(crate) fn stored(dir: &Path) -> Option<AgentRemoteConfig> {
    let path = dir.join(REMOTE_CONFIG_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the kept remote config; ignoring it");
            return None;
        }
    };
    match AgentRemoteConfig::decode(bytes.as_slice()) {
        Ok(remote) => Some(remote),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the kept remote config is damaged; ignoring it");
            None
        }
    }
}

/// Whether a value the server sent back is a placeholder for a secret.
#[cfg(test)]
fn is_redacted(value: &Value) -> bool {
    value.as_str() == Some(report::REDACTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::opamp::proto::{AgentConfigFile, AgentConfigMap};
    use std::collections::HashMap;

    fn remote(files: &[(&str, &str)]) -> AgentRemoteConfig {
        AgentRemoteConfig {
            config: Some(AgentConfigMap {
                config_map: files
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            AgentConfigFile {
                                body: v.as_bytes().to_vec(),
                                content_type: "text/yaml".into(),
                            },
                        )
                    })
                    .collect::<HashMap<_, _>>(),
            }),
            config_hash: vec![],
        }
    }

    fn running() -> Value {
        serde_yaml_ng::from_str(
            "server:\n  ws:\n    endpoint: ws://opamp:4320/v1/opamp\n    headers:\n      authorization: secret\n",
        )
        .expect("yaml")
    }

    fn parsed(yaml: &str) -> Value {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    #[test]
    fn a_config_without_the_extension_keeps_the_running_one() {
        let yaml = prepare(
            &remote(&[(
                "",
                "receivers: {otlp: {}}\nservice:\n  extensions: [health_check]\n",
            )]),
            "opamp",
            &running(),
        )
        .expect("prepared");
        let doc = parsed(&yaml);
        assert_eq!(doc["extensions"]["opamp"], running());
        assert_eq!(
            doc["service"]["extensions"],
            parsed("[health_check, opamp]")
        );
    }

    #[test]
    fn the_reported_redacted_section_is_accepted_and_restored() {
        let yaml = prepare(
            &remote(&[(
                "",
                "extensions:\n  opamp:\n    server:\n      ws:\n        endpoint: ws://opamp:4320/v1/opamp\n        headers:\n          authorization: '[REDACTED]'\nservice:\n  extensions: [opamp]\n",
            )]),
            "opamp",
            &running(),
        )
        .expect("prepared");
        let doc = parsed(&yaml);
        let header = &doc["extensions"]["opamp"]["server"]["ws"]["headers"]["authorization"];
        assert!(!is_redacted(header));
        assert_eq!(header, &Value::String("secret".into()));
    }

    #[test]
    fn changing_the_extension_is_refused() {
        let err = prepare(
            &remote(&[(
                "",
                "extensions:\n  opamp:\n    server:\n      ws:\n        endpoint: ws://elsewhere:4320/v1/opamp\n",
            )]),
            "opamp",
            &running(),
        )
        .expect_err("refused");
        assert!(err.contains("extensions.opamp"), "{err}");
    }

    #[test]
    fn yaml_errors_read_as_the_loader_reports_them() {
        let err = prepare(
            &remote(&[("", "receivers: [unclosed")]),
            "opamp",
            &running(),
        )
        .expect_err("syntax");
        assert!(
            err.starts_with("opamp remote config: invalid YAML"),
            "{err}"
        );
        let err = prepare(&remote(&[]), "opamp", &running()).expect_err("empty");
        assert!(err.contains("no files"), "{err}");
    }

    #[test]
    fn files_merge_with_the_whole_config_first() {
        let yaml = prepare(
            &remote(&[
                ("zz-override", "processors: {batch: {timeout: 1s}}"),
                (
                    "",
                    "processors: {batch: {timeout: 5s, send_batch_size: 10}}",
                ),
            ]),
            "opamp",
            &running(),
        )
        .expect("prepared");
        let doc = parsed(&yaml);
        assert_eq!(
            doc["processors"]["batch"]["timeout"],
            Value::String("1s".into())
        );
        assert_eq!(
            doc["processors"]["batch"]["send_batch_size"],
            Value::Number(10.into())
        );
    }

    #[test]
    fn hashes_and_storage() {
        let a = remote(&[("", "a: 1")]);
        assert_eq!(hash_of(&a), hash_of(&a.clone()));
        assert_ne!(hash_of(&a), hash_of(&remote(&[("", "a: 2")])));
        let mut given = a.clone();
        given.config_hash = vec![1, 2, 3];
        assert_eq!(hash_of(&given), vec![1, 2, 3]);

        let dir = tempfile::tempdir().expect("tempdir");
        assert!(stored(dir.path()).is_none());
        store(dir.path(), &given).expect("store");
        assert_eq!(stored(dir.path()), Some(given));
        std::fs::write(dir.path().join(REMOTE_CONFIG_FILE), [0xff, 0xff]).expect("damage");
        assert!(stored(dir.path()).is_none(), "damaged file ignored");
    }
}
