//! The accept loop shared by network receivers: hyper connections on a pooled
//! listener, stopped gracefully (in-flight requests finish) by a deadline.

use super::tls::TlsSource;
use crate::component::Host;
use crate::observe::RateLimitedLog;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// HTTP/2 settings for a server (gRPC uses them; HTTP/1.1 servers ignore them).
#[derive(Clone, Debug, Default)]
pub(crate) struct Http2Settings {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) keepalive_interval: Option<std::time::Duration>,
    pub(crate) keepalive_timeout: Option<std::time::Duration>,
}

/// A running server; dropping it does not stop it, [`RunningServer::stop`] does.
#[derive(Debug)]
pub(crate) struct RunningServer {
    stop: CancellationToken,
    done: tokio::sync::watch::Receiver<bool>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and waits until they
    /// did or `deadline` passed.
    pub(crate) async fn stop(mut self, deadline: Instant) {
        self.stop.cancel();
        let wait = self.done.wait_for(|done| *done);
        let _ = tokio::time::timeout_at(deadline.into(), wait).await;
    }
}

/// How long a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `make_service(peer)` for each connection accepted on `listener`.
/// If the accept loop dies (a panic: a bug), `host` is told, so the collector
/// reports itself unhealthy instead of silently no longer listening.
pub(crate) fn spawn<F, S, Fut, B>(
    owner: &str,
    host: &Arc<Host>,
    listener: Arc<TcpListener>,
    http2: Http2Settings,
    make_service: F,
) -> RunningServer
where
    F: Fn(Option<SocketAddr>) -> S + Send + 'static,
    S: Fn(http::Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<http::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    spawn_with_tls(owner, host, listener, http2, None, make_service)
}

/// Like [`spawn`], over TLS when `tls` is given: each connection's handshake
/// runs in its own task (bounded by a timeout), so a slow client holds up
/// nobody else. A failed handshake (e.g. no or an untrusted client
/// certificate under mutual TLS) closes that connection and is logged.
pub(crate) fn spawn_with_tls<F, S, Fut, B>(
    owner: &str,
    host: &Arc<Host>,
    listener: Arc<TcpListener>,
    http2: Http2Settings,
    tls: Option<Arc<TlsSource>>,
    make_service: F,
) -> RunningServer
where
    F: Fn(Option<SocketAddr>) -> S + Send + 'static,
    S: Fn(http::Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<http::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stop = CancellationToken::new();
    let handshake_log = Arc::new(RateLimitedLog::default());
    let owner_name: Arc<str> = Arc::from(owner);
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let token = stop.clone();
    let accept_loop = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        {
            let mut h2 = builder.http2();
            h2.max_concurrent_streams(http2.max_concurrent_streams);
            if let Some(interval) = http2.keepalive_interval {
                h2.keep_alive_interval(interval);
                h2.timer(hyper_util::rt::TokioTimer::new());
            }
            if let Some(timeout) = http2.keepalive_timeout {
                h2.keep_alive_timeout(timeout);
            }
        }
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = token.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends are transient: back off briefly
                    // instead of spinning, and keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let service = make_service(Some(peer));
            let service = hyper::service::service_fn(move |req| (service.clone())(req));
            let Some(tls) = &tls else {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
                continue;
            };
            let acceptor = tls.acceptor();
            let (builder, watcher) = (builder.clone(), graceful.watcher());
            let (log, owner) = (handshake_log.clone(), owner_name.clone());
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        if let Some(suppressed) = log.check() {
                            tracing::warn!(component = %owner, peer = %peer, error = %e, suppressed, "TLS handshake failed");
                        }
                        return;
                    }
                    Err(_) => {
                        if let Some(suppressed) = log.check() {
                            tracing::warn!(component = %owner, peer = %peer, suppressed, "TLS handshake timed out");
                        }
                        return;
                    }
                };
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
        let _ = done_tx.send(true);
    });
    let (host, owner) = (host.clone(), owner.to_string());
    tokio::spawn(async move {
        if let Err(e) = accept_loop.await {
            host.report_fatal_error(&owner, &e);
        }
    });
    RunningServer { stop, done }
}
