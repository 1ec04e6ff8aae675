//! `otlp` receiver: traces, metrics and logs over OTLP/gRPC and OTLP/HTTP. Stability: beta.
//!
//! Data path: listener -> `grpc.rs` / `http.rs` (decompress, decode with
//! limits) -> `ingest.rs` (drop invalid IDs, count) -> the pipelines' consumers.
//! Refusals from downstream travel back as gRPC codes / HTTP statuses.

mod client_attributes;
mod config;
mod cors;
mod grpc;
mod http;
mod ingest;
mod limits;
mod rate_limit;

pub use config::{
    CorsConfig, GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols, RateLimitConfig,
};
pub use grpc::{RawCodec, RawDecoder, RawEncoder};

use crate::component::{
    ComponentError, CreateContext, Factory, Host, Lifecycle, Receiver, ReceiverConsumers,
    ReceiverFactory, Stability,
};
use crate::config::ConfigError;
use crate::pdata::Signal;
use crate::receiver::server::{self, Http2Settings, RunningServer};
use crate::receiver::tls::TlsSource;
use async_trait::async_trait;
use ingest::Ingest;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// Builds `otlp` receivers.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtlpReceiverFactory;

impl Factory for OtlpReceiverFactory {
    type Config = OtlpReceiverConfig;
    fn type_name(&self) -> &'static str {
        "otlp"
    }
    fn stability(&self) -> Stability {
        Stability::Stable
    }
    fn validate(&self, config: &OtlpReceiverConfig) -> Result<(), ConfigError> {
        config.validate()
    }
}

impl ReceiverFactory for OtlpReceiverFactory {
    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }
    fn create(
        &self,
        ctx: &CreateContext,
        config: &OtlpReceiverConfig,
        consumers: ReceiverConsumers,
    ) -> Result<Box<dyn Receiver>, ComponentError> {
        Ok(Box::new(OtlpReceiver {
            id: ctx.id.to_string(),
            config: config.clone(),
            host: ctx.host.clone(),
            ingest: Arc::new(Ingest::new(&ctx.id.to_string(), &ctx.host, consumers)),
            servers: Mutex::new(Vec::new()),
        }))
    }
}

/// A running `otlp` receiver.
#[derive(Debug)]
pub struct OtlpReceiver {
    id: String,
    config: OtlpReceiverConfig,
    host: Arc<Host>,
    ingest: Arc<Ingest>,
    servers: Mutex<Vec<RunningServer>>,
}

impl OtlpReceiver {
    fn start_grpc(
        &self,
        listener: Arc<tokio::net::TcpListener>,
        grpc: &GrpcConfig,
        tls: Option<Arc<TlsSource>>,
    ) -> RunningServer {
        let max_recv_bytes =
            usize::try_from(grpc.max_recv_msg_size_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX);
        let keepalive = grpc
            .keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.as_ref());
        let http2 = Http2Settings {
            max_concurrent_streams: (grpc.max_concurrent_streams > 0)
                .then_some(grpc.max_concurrent_streams),
            keepalive_interval: keepalive.and_then(|k| k.time),
            keepalive_timeout: keepalive.and_then(|k| k.timeout),
        };
        let ingest = self.ingest.clone();
        let include_metadata = grpc.include_metadata;
        server::spawn_with_tls(
            &format!("{}/grpc", self.id),
            &self.host,
            listener,
            http2,
            tls,
            move |peer| {
                let handler = grpc::GrpcHandler {
                    ingest: ingest.clone(),
                    max_recv_bytes,
                    include_metadata,
                    peer,
                };
                move |request| handler.clone().serve(request)
            },
        )
    }

    fn start_http(
        &self,
        listener: Arc<tokio::net::TcpListener>,
        config: &HttpConfig,
        tls: Option<Arc<TlsSource>>,
    ) -> RunningServer {
        let settings = Arc::new(http::HttpSettings {
            ingest: self.ingest.clone(),
            traces_path: config.traces_url_path.clone(),
            metrics_path: config.metrics_url_path.clone(),
            logs_path: config.logs_url_path.clone(),
            max_body: usize::try_from(config.max_request_body_size).unwrap_or(usize::MAX),
            include_metadata: config.include_metadata,
            cors: config.cors.as_ref().map(cors::Cors::new),
            encodings: config
                .compression_algorithms
                .iter()
                .filter_map(|name| crate::compression::Encoding::from_header(name))
                .collect(),
            response_headers: http::response_header_list(&config.response_headers),
            accept_text_plain_json: config.accept_text_plain_json,
            concurrent_requests: (config.max_concurrent_requests > 0).then(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    config.max_concurrent_requests as usize,
                ))
            }),
            decoding_bytes: (config.max_decoding_bytes > 0).then(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(config.max_decoding_bytes)
                        .unwrap_or(usize::MAX)
                        .min(tokio::sync::Semaphore::MAX_PERMITS),
                ))
            }),
            rate_limit: config
                .rate_limit
                .as_ref()
                .map(|limit| rate_limit::RateLimit::new(&self.id, limit, &self.host.metrics)),
            limits: config.limits.as_ref().map(limits::RequestLimits::new),
            add_client_address: config.add_client_address,
            add_user_agent: config.add_user_agent,
        });
        server::spawn_with_tls(
            &format!("{}/http", self.id),
            &self.host,
            listener,
            Http2Settings::default(),
            tls,
            move |peer| {
                let settings = settings.clone();
                move |request| settings.clone().serve(peer, request)
            },
        )
    }
}

/// Logs the bound address in a stable shape (`component`, `protocol`,
/// `address` fields), so tools and tests can find ports bound as `:0`.
fn log_listening(
    id: &str,
    protocol: &str,
    listener: &tokio::net::TcpListener,
    tls: Option<&TlsSource>,
) {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let tls = match tls {
        None => "none",
        Some(source) if source.is_mutual() => "mutual",
        Some(_) => "server",
    };
    tracing::info!(component = %id, protocol, address = %address, tls, "listening");
}

/// Loads a protocol's TLS settings (before anything listens, so a bad
/// certificate stops the start).
fn load_tls(
    owner: &str,
    tls: &Option<crate::receiver::tls::ServerTls>,
) -> Result<Option<Arc<TlsSource>>, ComponentError> {
    tls.as_ref()
        .map(|tls| TlsSource::new(owner, tls).map(Arc::new))
        .transpose()
        .map_err(ComponentError::new)
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        let protocols = &self.config.protocols;
        let grpc_tls = match &protocols.grpc {
            Some(grpc) => load_tls(&format!("{}/grpc", self.id), &grpc.tls)
                .map_err(|e| ComponentError::new(format!("grpc: {e}")))?,
            None => None,
        };
        let http_tls = match &protocols.http {
            Some(http) => load_tls(&format!("{}/http", self.id), &http.tls)
                .map_err(|e| ComponentError::new(format!("http: {e}")))?,
            None => None,
        };
        let mut servers = Vec::new();
        if let Some(grpc) = &protocols.grpc {
            let listener = self
                .host
                .listeners
                .tcp(&format!("{}/grpc", self.id), &grpc.endpoint)
                .await
                .map_err(|e| ComponentError::new(format!("grpc: {e}")))?;
            log_listening(&self.id, "grpc", &listener, grpc_tls.as_deref());
            servers.push(self.start_grpc(listener, grpc, grpc_tls));
        }
        if let Some(http) = &protocols.http {
            let listener = match self
                .host
                .listeners
                .tcp(&format!("{}/http", self.id), &http.endpoint)
                .await
            {
                Ok(listener) => listener,
                Err(e) => {
                    for server in servers {
                        server.stop(Instant::now()).await;
                    }
                    return Err(ComponentError::new(format!("http: {e}")));
                }
            };
            log_listening(&self.id, "http", &listener, http_tls.as_deref());
            servers.push(self.start_http(listener, http, http_tls));
        }
        *self.servers.lock() = servers;
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let servers = std::mem::take(&mut *self.servers.lock());
        for server in servers {
            server.stop(deadline).await;
        }
        Ok(())
    }
}
