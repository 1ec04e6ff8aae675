//! `health_check` extension: an HTTP endpoint for liveness/readiness probes. Stability: beta.
//!
//! Data path: none; answers `GET <path>` with 200 while the pipelines run and
//! 503 while starting, stopping or after a fatal component error, with a
//! small JSON body like otelcol's (`{"status":"Server available", ...}`).

use crate::component::{
    ComponentError, CreateContext, Extension, ExtensionFactory, Factory, HealthStatus, Host,
    Lifecycle,
};
use crate::config::ConfigError;
use crate::receiver::server::{self, Http2Settings, RunningServer};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// `extensions.health_check`
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Listen address (default `localhost:13133`).
    pub endpoint: String,
    /// Path answered (default `/`).
    pub path: String,
    /// Accepted for compatibility (otelcol's deprecated pipeline check).
    pub check_collector_pipeline: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility.
    pub response_body: Option<serde_yaml_ng::Value>,
    /// Accepted for compatibility.
    pub tls: Option<serde_yaml_ng::Value>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            endpoint: "localhost:13133".into(),
            path: "/".into(),
            check_collector_pipeline: None,
            response_body: None,
            tls: None,
        }
    }
}

/// Builds `health_check` extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealthCheckFactory;

impl Factory for HealthCheckFactory {
    type Config = HealthCheckConfig;
    fn type_name(&self) -> &'static str {
        "health_check"
    }
    fn validate(&self, config: &HealthCheckConfig) -> Result<(), ConfigError> {
        if !config.path.starts_with('/') {
            return Err(ConfigError::new(
                "path",
                format!("{:?} must start with '/'", config.path),
            ));
        }
        crate::config::service::resolve_listen_address(&config.endpoint)
            .map_err(|e| ConfigError::new("endpoint", e))?;
        Ok(())
    }
}

impl ExtensionFactory for HealthCheckFactory {
    fn create(
        &self,
        ctx: &CreateContext,
        config: &HealthCheckConfig,
    ) -> Result<Arc<dyn Extension>, ComponentError> {
        Ok(Arc::new(HealthCheck {
            id: ctx.id.to_string(),
            config: config.clone(),
            host: ctx.host.clone(),
            server: Mutex::new(None),
        }))
    }
}

/// A running `health_check` extension.
#[derive(Debug)]
pub struct HealthCheck {
    id: String,
    config: HealthCheckConfig,
    host: Arc<Host>,
    server: Mutex<Option<RunningServer>>,
}

fn unix_seconds_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

#[async_trait]
impl Lifecycle for HealthCheck {
    async fn start(&self) -> Result<(), ComponentError> {
        let listener = self
            .host
            .listeners
            .tcp(&self.id, &self.config.endpoint)
            .await
            .map_err(|e| ComponentError::new(e.to_string()))?;
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(component = "health_check", protocol = "http", address = %address, "listening");
        let host = self.host.clone();
        let path: Arc<str> = Arc::from(self.config.path.as_str());
        let started = unix_seconds_now();
        let running = server::spawn(
            &self.id,
            &self.host,
            listener,
            Http2Settings::default(),
            move |_peer| {
                let host = host.clone();
                let path = path.clone();
                let started = started.clone();
                move |request: http::Request<hyper::body::Incoming>| {
                    let status = host.health.get();
                    let matches = request.uri().path() == &*path;
                    let started = started.clone();
                    async move {
                        let (code, body) = if !matches {
                            (
                                http::StatusCode::NOT_FOUND,
                                "404 page not found".to_string(),
                            )
                        } else {
                            let (code, text) = match status {
                                HealthStatus::Ready => (http::StatusCode::OK, "Server available"),
                                HealthStatus::Starting
                                | HealthStatus::Stopping
                                | HealthStatus::Failed => (
                                    http::StatusCode::SERVICE_UNAVAILABLE,
                                    "Server not available",
                                ),
                            };
                            (
                                code,
                                format!("{{\"status\":\"{text}\",\"upSince\":\"{started}\"}}"),
                            )
                        };
                        let mut response = http::Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = code;
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                }
            },
        );
        *self.server.lock() = Some(running);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let server = self.server.lock().take();
        if let Some(server) = server {
            server.stop(deadline).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ComponentId;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (
            status,
            raw.split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn answers_with_the_collector_health() {
        let host = Host::new();
        let config = HealthCheckConfig {
            endpoint: "127.0.0.1:0".into(),
            path: "/health".into(),
            ..Default::default()
        };
        let ctx = CreateContext {
            id: ComponentId::new("health_check", None),
            host: host.clone(),
        };
        let extension = HealthCheckFactory.create(&ctx, &config).expect("create");
        extension.start().await.expect("start");
        let addr = host
            .listeners
            .local_addr("health_check", "127.0.0.1:0")
            .expect("bound");

        assert_eq!(get(addr, "/health").await.0, 503, "starting");
        host.health.set(HealthStatus::Ready);
        let (status, body) = get(addr, "/health").await;
        assert_eq!(status, 200);
        assert!(body.contains("Server available"), "{body}");
        assert_eq!(get(addr, "/other").await.0, 404);

        host.report_fatal_error("exporter/x", &"disk full");
        assert_eq!(get(addr, "/health").await.0, 503, "after a fatal error");
        host.health.set(HealthStatus::Ready);
        assert_eq!(get(addr, "/health").await.0, 503, "a fatal error is sticky");

        extension
            .shutdown(Instant::now() + std::time::Duration::from_secs(1))
            .await
            .expect("shutdown");
    }
}
