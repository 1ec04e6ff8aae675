//! The two OpAMP transports: a WebSocket carrying framed messages both ways,
//! and plain HTTP where each `AgentToServer` is a POST answered by a
//! `ServerToAgent`. Both run over TCP, with TLS for `wss://`/`https://`.

use super::config::{ClientTls, ServerConnection, Transport};
use super::proto::{self, AgentToServer, ServerToAgent};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long connecting (TCP, TLS, upgrade) and one HTTP exchange may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted from the server (a whole collector config
/// fits many times over).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Why talking to the server failed; `retry_after` when the server said when
/// to come back (HTTP 429/503 with `Retry-After`).
#[derive(Debug)]
pub(crate) struct TransportError {
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl TransportError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open line to the server.
pub(crate) enum Connection {
    /// Messages flow both ways at any time.
    WebSocket(Box<WebSocketStream<Box<dyn Stream>>>),
    /// Each send is a request; the answer comes back with it.
    Http(Box<HttpSender>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::WebSocket(_) => f.write_str("WebSocket"),
            Connection::Http(_) => f.write_str("Http"),
        }
    }
}

/// Where plain-HTTP requests go.
pub(crate) struct HttpSender {
    server: ServerConnection,
    uri: http::Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connection {
    /// Opens a connection as `server` says (for HTTP, checks only the URL and
    /// TLS settings: each send connects).
    pub(crate) async fn open(server: &ServerConnection) -> Result<Self, TransportError> {
        let uri: http::Uri = server
            .endpoint
            .parse()
            .map_err(|e| TransportError::new(format!("{:?}: {e}", server.endpoint)))?;
        let secure = matches!(uri.scheme_str(), Some("wss" | "https"));
        let tls = if secure {
            Some(client_tls(&server.tls)?)
        } else {
            None
        };
        match server.transport {
            Transport::WebSocket => {
                let stream = dial(&uri, &server.tls, tls.as_ref()).await?;
                let mut request = server
                    .endpoint
                    .as_str()
                    .into_client_request()
                    .map_err(|e| TransportError::new(format!("upgrade request: {e}")))?;
                add_headers(request.headers_mut(), &server.headers)?;
                let (socket, _) = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio_tungstenite::client_async(request, stream),
                )
                .await
                .map_err(|_| TransportError::new("WebSocket upgrade timed out"))?
                .map_err(|e| TransportError::new(format!("WebSocket upgrade: {e}")))?;
                Ok(Connection::WebSocket(Box::new(socket)))
            }
            Transport::Http { .. } => Ok(Connection::Http(Box::new(HttpSender {
                server: server.clone(),
                uri,
                tls,
            }))),
        }
    }

    /// Sends `message`; over HTTP also returns the server's answer.
    pub(crate) async fn send(
        &mut self,
        message: &AgentToServer,
    ) -> Result<Option<ServerToAgent>, TransportError> {
        match self {
            Connection::WebSocket(socket) => {
                let frame = proto::encode_ws_frame(message);
                socket
                    .send(Message::Binary(frame.into()))
                    .await
                    .map_err(|e| TransportError::new(format!("WebSocket send: {e}")))?;
                Ok(None)
            }
            Connection::Http(sender) => sender.exchange(message).await.map(Some),
        }
    }

    /// The next message from the server (WebSocket); never returns over HTTP.
    pub(crate) async fn recv(&mut self) -> Result<ServerToAgent, TransportError> {
        let Connection::WebSocket(socket) = self else {
            return std::future::pending().await;
        };
        loop {
            let message = socket
                .next()
                .await
                .ok_or_else(|| TransportError::new("the server closed the connection"))?
                .map_err(|e| TransportError::new(format!("WebSocket receive: {e}")))?;
            match message {
                Message::Binary(frame) => {
                    if frame.len() > MAX_MESSAGE {
                        return Err(TransportError::new(format!(
                            "message of {} bytes exceeds {MAX_MESSAGE}",
                            frame.len()
                        )));
                    }
                    return proto::decode_ws_frame(&frame)
                        .map_err(|e| TransportError::new(e.to_string()));
                }
                Message::Close(frame) => {
                    return Err(TransportError::new(format!(
                        "the server closed the connection{}",
                        frame
                            .map(|f| format!(": {} {}", f.code, f.reason))
                            .unwrap_or_default()
                    )));
                }
                // Pings are answered by the library; text frames are not OpAMP.
                _ => continue,
            }
        }
    }

    /// Closes the connection politely (WebSocket close frame).
    pub(crate) async fn close(&mut self) {
        if let Connection::WebSocket(socket) = self {
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
        }
    }
}

impl HttpSender {
    async fn exchange(&self, message: &AgentToServer) -> Result<ServerToAgent, TransportError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.exchange_inner(message))
            .await
            .map_err(|_| TransportError::new("OpAMP HTTP request timed out"))?
    }

    async fn exchange_inner(
        &self,
        message: &AgentToServer,
    ) -> Result<ServerToAgent, TransportError> {
        let stream = dial(&self.uri, &self.server.tls, self.tls.as_ref()).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| TransportError::new(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority(&self.uri))
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(message.encode_to_vec())))
            .map_err(|e| TransportError::new(format!("HTTP request: {e}")))?;
        add_headers(request.headers_mut(), &self.server.headers)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| TransportError::new(format!("HTTP: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Limited::new(response.into_body(), MAX_MESSAGE)
            .collect()
            .await
            .map_err(|e| TransportError::new(format!("HTTP response body: {e}")))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(TransportError {
                message: format!("the server answered HTTP {status}"),
                retry_after,
            });
        }
        ServerToAgent::decode(body)
            .map_err(|e| TransportError::new(format!("undecodable ServerToAgent: {e}")))
    }
}

fn authority(uri: &http::Uri) -> String {
    uri.authority().map(|a| a.to_string()).unwrap_or_default()
}

fn add_headers(
    headers: &mut http::HeaderMap,
    extra: &std::collections::BTreeMap<String, String>,
) -> Result<(), TransportError> {
    for (name, value) in extra {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TransportError::new(format!("header {name:?}: {e}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|e| TransportError::new(format!("header {name}: {e}")))?;
        headers.insert(name, value);
    }
    Ok(())
}

/// TCP to the URL's host and port (defaults by scheme), with TLS when given.
async fn dial(
    uri: &http::Uri,
    settings: &ClientTls,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Stream>, TransportError> {
    let host = uri
        .host()
        .ok_or_else(|| TransportError::new(format!("{uri}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss" | "https") => 443,
        _ => 80,
    });
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| TransportError::new(format!("connecting to {host}:{port} timed out")))?
        .map_err(|e| TransportError::new(format!("cannot connect to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = if settings.server_name_override.is_empty() {
        host.clone()
    } else {
        settings.server_name_override.clone()
    };
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| TransportError::new(format!("TLS server name {name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| TransportError::new(format!("TLS handshake with {host}:{port}: {e}")))?;
    Ok(Box::new(stream))
}

fn read_pem(file: &str, inline: &str, what: &str) -> Result<Option<Vec<u8>>, TransportError> {
    crate::pem::read(file, inline, what).map_err(TransportError::new)
}

/// The rustls client config `settings` describe: system roots, or the given
/// CA (plus system roots when asked), and a client certificate when given.
fn client_tls(settings: &ClientTls) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let ca = read_pem(&settings.ca_file, &settings.ca_pem, "ca_file")?;
    if ca.is_none() || settings.include_system_ca_certs_pool {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|e| TransportError::new(format!("tls.ca_file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TransportError::new(format!("tls.ca_file: {e}")))?;
        }
    }
    let provider = crate::crypto::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::new(format!("tls: {e}")))?
        .with_root_certificates(roots);
    let cert = read_pem(&settings.cert_file, &settings.cert_pem, "cert_file")?;
    let key = read_pem(&settings.key_file, &settings.key_pem, "key_file")?;
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TransportError::new(format!("tls.cert_file: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| TransportError::new(format!("tls.key_file: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::new(format!("tls client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
