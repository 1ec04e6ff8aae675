//! `extensions.opamp`: otelcol's keys, plus ours (`accepts_remote_config`,
//! `state_directory`, `heartbeat_interval`).

use crate::config::{ConfigError, duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `extensions.opamp`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpampConfig {
    /// Where the OpAMP server is: exactly one of `ws` and `http`.
    pub server: ServerConfig,
    /// The agent's instance UID (a UUID); generated when empty.
    pub instance_uid: String,
    /// What the agent reports and accepts.
    pub capabilities: Capabilities,
    /// Extra attributes of the agent description.
    pub agent_description: AgentDescriptionConfig,
    /// Where the generated instance UID and the last applied remote config
    /// are kept across restarts; nothing is kept when empty.
    pub state_directory: Option<PathBuf>,
    /// How often the agent sends a message when nothing changed (the server
    /// can only hand over a pending config in a reply). The server's
    /// `ConnectionSettingsOffers.opamp.heartbeat_interval_seconds` wins.
    #[serde(with = "duration::option")]
    pub heartbeat_interval: Option<Duration>,
    /// otelcol's supervisor parent-process id; accepted, not acted on (this
    /// collector applies remote config itself, without a supervisor).
    pub ppid: u32,
    /// Accepted with `ppid`.
    #[serde(with = "duration::option")]
    pub ppid_poll_interval: Option<Duration>,
}

/// `server`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// WebSocket transport (`ws://` or `wss://`).
    pub ws: Option<WsServer>,
    /// Plain-HTTP transport (`http://` or `https://`), polling.
    pub http: Option<HttpServer>,
}

/// `server.ws`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsServer {
    /// `ws://host:port/v1/opamp`
    pub endpoint: String,
    /// Headers sent with the upgrade request.
    pub headers: BTreeMap<String, String>,
    /// TLS for `wss://`.
    pub tls: ClientTls,
}

/// `server.http`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServer {
    /// `http://host:port/v1/opamp`
    pub endpoint: String,
    /// Headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// TLS for `https://`.
    pub tls: ClientTls,
    /// How often to poll the server (default 30s, as otelcol).
    #[serde(with = "duration::option")]
    pub polling_interval: Option<Duration>,
}

/// Client TLS, with otelcol's key names.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    /// No TLS (only meaningful with `wss://`/`https://`, where it is refused:
    /// the scheme decides).
    pub insecure: bool,
    /// Trusted CA certificates, PEM file.
    pub ca_file: String,
    /// Trusted CA certificates, PEM text.
    pub ca_pem: String,
    /// Also trust the system's roots when a CA is given.
    pub include_system_ca_certs_pool: bool,
    /// Client certificate (mutual TLS), PEM file.
    pub cert_file: String,
    /// Client certificate, PEM text.
    pub cert_pem: String,
    /// Client key, PEM file.
    pub key_file: String,
    /// Client key, PEM text.
    pub key_pem: String,
    /// The name the server certificate must carry, when not the endpoint's host.
    pub server_name_override: String,
}

/// `capabilities`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// Report the running configuration (default true).
    pub reports_effective_config: bool,
    /// Report component health (default true).
    pub reports_health: bool,
    /// Accepted for otelcol compatibility; not reported.
    pub reports_available_components: bool,
    /// Apply configuration pushed by the server (default true; false
    /// behaves as otelcol's read-only extension).
    pub accepts_remote_config: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            reports_effective_config: true,
            reports_health: true,
            reports_available_components: false,
            accepts_remote_config: true,
        }
    }
}

/// `agent_description`
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentDescriptionConfig {
    /// Added to (and overriding) the detected non-identifying attributes.
    pub non_identifying_attributes: BTreeMap<String, String>,
    /// Accepted for otelcol compatibility.
    pub include_resource_attributes: bool,
}

/// Which transport, resolved from `server`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Transport {
    WebSocket,
    Http { polling_interval: Duration },
}

/// The server and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServerConnection {
    pub(crate) transport: Transport,
    pub(crate) endpoint: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) tls: ClientTls,
}

/// otelcol's default polling interval for the HTTP transport.
const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_secs(30);
/// Our default heartbeat.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

impl OpampConfig {
    /// The transport, endpoint, headers and TLS in use.
    pub(crate) fn connection(&self) -> ServerConnection {
        match (&self.server.ws, &self.server.http) {
            (Some(ws), _) => ServerConnection {
                transport: Transport::WebSocket,
                endpoint: ws.endpoint.clone(),
                headers: ws.headers.clone(),
                tls: ws.tls.clone(),
            },
            (None, Some(http)) => ServerConnection {
                transport: Transport::Http {
                    polling_interval: http.polling_interval.unwrap_or(DEFAULT_POLLING_INTERVAL),
                },
                endpoint: http.endpoint.clone(),
                headers: http.headers.clone(),
                tls: http.tls.clone(),
            },
            // validate() refuses this; connecting to "" fails with a message.
            (None, None) => ServerConnection {
                transport: Transport::WebSocket,
                endpoint: String::new(),
                headers: BTreeMap::new(),
                tls: ClientTls::default(),
            },
        }
    }

    /// Checks what the types do not say, with paths relative to the section.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let (path, endpoint, schemes, tls) = match (&self.server.ws, &self.server.http) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new("server", "set only one of ws and http"));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "server",
                    "an OpAMP server is required: set server.ws.endpoint or server.http.endpoint",
                ));
            }
            (Some(ws), None) => ("server.ws", &ws.endpoint, ["ws", "wss"], &ws.tls),
            (None, Some(http)) => ("server.http", &http.endpoint, ["http", "https"], &http.tls),
        };
        let uri: http::Uri = endpoint.parse().map_err(|e| {
            ConfigError::new(
                format!("{path}.endpoint"),
                format!("{endpoint:?} is not a URL: {e}"),
            )
        })?;
        let scheme = uri.scheme_str().unwrap_or("");
        if !schemes.contains(&scheme) || uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                format!("{path}.endpoint"),
                format!(
                    "{endpoint:?}: expected {}://host:port/path or {}://...",
                    schemes[0], schemes[1]
                ),
            ));
        }
        if tls.insecure && scheme == schemes[1] {
            return Err(ConfigError::new(
                format!("{path}.tls.insecure"),
                format!(
                    "the {scheme}:// endpoint asks for TLS; use {}:// for none",
                    schemes[0]
                ),
            ));
        }
        for (name, value) in [
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
            ("ca_file", &tls.ca_file),
        ] {
            if !value.is_empty() && !std::path::Path::new(value).is_file() {
                return Err(ConfigError::new(
                    format!("{path}.tls.{name}"),
                    format!("{value:?} is not a readable file"),
                ));
            }
        }
        if !self.instance_uid.is_empty() {
            uuid::Uuid::parse_str(&self.instance_uid).map_err(|e| {
                ConfigError::new(
                    "instance_uid",
                    format!("{:?} is not a UUID: {e}", self.instance_uid),
                )
            })?;
        }
        for (name, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            (
                "server.http.polling_interval",
                self.server.http.as_ref().and_then(|h| h.polling_interval),
            ),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(name, "must be positive"));
            }
        }
        Ok(())
    }

    /// The heartbeat interval before the server offers one.
    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat_interval.unwrap_or(DEFAULT_HEARTBEAT)
    }
}
