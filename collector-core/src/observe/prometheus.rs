//! The Prometheus pull endpoint for self-metrics (`/metrics`).

use super::MetricsRegistry;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `registry` on `listener` until `shutdown` fires. Any path answers
/// with the metrics (Prometheus scrapes `/metrics`).
pub async fn serve_prometheus(
    listener: Arc<TcpListener>,
    registry: Arc<MetricsRegistry>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let body = registry.render_prometheus();
                async move {
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header(
                                http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
