//! The HTTP client of `otlphttp`: hyper's pooled client over plain TCP for
//! `http://` URLs and rustls for `https://` ones (the `otlp` exporter's TLS
//! keys: CA file or system roots, client certificate, server-name override,
//! `insecure_skip_verify`). HTTP/2 is used when the server picks it by ALPN.

use super::config::OtlpHttpConfig;
use crate::otlp::TlsConfig;
use crate::otlp::tls::{AcceptAnyCertificate, read_pem};
use bytes::Bytes;
use collector_core::component::ComponentError;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The pooled client requests go through.
pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the client for `config`. Must be called inside a tokio runtime.
pub(crate) fn build(config: &OtlpHttpConfig) -> Result<HttpClient, ComponentError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ComponentError::new(
            "the otlphttp exporter must be created inside a tokio runtime",
        ));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let tls = tls_config(&config.tls)?;
    let server_name = if config.tls.server_name_override.is_empty() {
        None
    } else {
        Some(
            ServerName::try_from(config.tls.server_name_override.clone())
                .map_err(|e| ComponentError::new(format!("tls.server_name_override: {e}")))?,
        )
    };
    let connector = Connector {
        http,
        tls: TlsConnector::from(tls),
        server_name,
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(config.idle_conn_timeout.unwrap_or(Duration::from_secs(90)));
    let per_host = config
        .max_idle_conns_per_host
        .or(config.max_idle_conns)
        .unwrap_or(usize::MAX);
    builder.pool_max_idle_per_host(if config.disable_keep_alives {
        0
    } else {
        per_host
    });
    Ok(builder.build(connector))
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ComponentError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ComponentError::new(format!("tls.{what}: not valid PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(ComponentError::new(format!(
            "tls.{what}: no certificate in it"
        )));
    }
    Ok(certs)
}

fn versions(tls: &TlsConfig) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let allow13 = tls.max_version != "1.2";
    let allow12 = tls.min_version != "1.3";
    let mut out = Vec::new();
    if allow13 {
        out.push(&rustls::version::TLS13);
    }
    if allow12 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The rustls client config of `tls`.
pub(crate) fn tls_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, ComponentError> {
    let provider = collector_core::crypto::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions(tls))
        .map_err(|e| ComponentError::new(format!("tls: {e}")))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new()))
    } else {
        let mut roots = RootCertStore::empty();
        let ca = read_pem(&tls.ca_file, &tls.ca_pem, "ca_file")?;
        if let Some(ca) = &ca {
            for cert in certificates(ca, "ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| ComponentError::new(format!("tls.ca_file: {e}")))?;
            }
        }
        if ca.is_none() || tls.include_system_ca_certs_pool {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::debug!(error = %error, "skipping a system CA certificate");
            }
            let (_, _) = roots.add_parsable_certificates(native.certs);
        }
        builder.with_root_certificates(roots)
    };
    let cert = read_pem(&tls.cert_file, &tls.cert_pem, "cert_file")?;
    let key = read_pem(&tls.key_file, &tls.key_pem, "key_file")?;
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(&cert, "cert_file")?;
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                ComponentError::new(format!("tls.key_file: no usable private key: {e}"))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                ComponentError::new(format!(
                    "tls: the client certificate and key do not match: {e}"
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects TCP, then TLS for `https://` URLs.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    tls: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let connecting = self.http.call(uri.clone());
        let tls = self.tls.clone();
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let name = match server_name {
                Some(name) => name,
                None => {
                    let host = uri.host().unwrap_or_default();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    ServerName::try_from(host.to_string())?
                }
            };
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// A connection, with or without TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    /// `http://`.
    Plain(TokioIo<TcpStream>),
    /// `https://`.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
