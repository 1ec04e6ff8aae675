//! Sending encoded requests over gRPC or HTTP.

use crate::{Args, Protocol, SignalArg};
use anyhow::Context;
use bytes::Bytes;
use collector_core::receiver::otlp::RawCodec;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::Write;

/// What became of one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Accepted.
    Ok,
    /// Refused with a retryable "slow down" (RESOURCE_EXHAUSTED/UNAVAILABLE, 429/503).
    Refused,
    /// Any other failure.
    Failed(String),
}

/// A cloneable sender for one endpoint.
#[derive(Clone, Debug)]
pub(crate) enum Client {
    Grpc {
        channel: tonic::transport::Channel,
        path: http::uri::PathAndQuery,
        gzip: bool,
    },
    Http {
        client: Box<HttpClient<HttpConnector, Full<Bytes>>>,
        uri: http::Uri,
        content_type: &'static str,
        gzip: bool,
    },
}

impl Client {
    pub(crate) async fn new(args: &Args) -> anyhow::Result<Self> {
        let gzip = args.compression == "gzip";
        let signal_path = match args.signal {
            SignalArg::Traces => (
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                "/v1/traces",
            ),
            SignalArg::Metrics => (
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                "/v1/metrics",
            ),
            SignalArg::Logs => (
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                "/v1/logs",
            ),
        };
        let base = if args.endpoint.contains("://") {
            args.endpoint.clone()
        } else {
            format!("http://{}", args.endpoint)
        };
        match args.protocol {
            Protocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(base.clone())
                    .with_context(|| format!("endpoint {base}"))?
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {base}"))?;
                Ok(Client::Grpc {
                    channel,
                    path: http::uri::PathAndQuery::from_static(signal_path.0),
                    gzip,
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let uri: http::Uri = format!("{}{}", base.trim_end_matches('/'), signal_path.1)
                    .parse()
                    .context("endpoint URL")?;
                let content_type = if args.protocol == Protocol::HttpJson {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                let client = Box::new(HttpClient::builder(TokioExecutor::new()).build_http());
                Ok(Client::Http {
                    client,
                    uri,
                    content_type,
                    gzip,
                })
            }
        }
    }

    pub(crate) async fn send(&self, body: Bytes) -> Outcome {
        match self {
            Client::Grpc {
                channel,
                path,
                gzip,
            } => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                if *gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                if let Err(e) = grpc.ready().await {
                    return Outcome::Failed(e.to_string());
                }
                match grpc
                    .unary::<Bytes, Bytes, _>(tonic::Request::new(body), path.clone(), RawCodec)
                    .await
                {
                    Ok(_) => Outcome::Ok,
                    Err(s)
                        if matches!(
                            s.code(),
                            tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                        ) =>
                    {
                        Outcome::Refused
                    }
                    Err(s) => Outcome::Failed(format!("{}: {}", s.code(), s.message())),
                }
            }
            Client::Http {
                client,
                uri,
                content_type,
                gzip,
            } => {
                let mut builder = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, *content_type);
                let body = if *gzip {
                    builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
                    let mut encoder =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    if let Err(e) = encoder.write_all(&body) {
                        return Outcome::Failed(e.to_string());
                    }
                    match encoder.finish() {
                        Ok(packed) => Bytes::from(packed),
                        Err(e) => return Outcome::Failed(e.to_string()),
                    }
                } else {
                    body
                };
                let request = match builder.body(Full::new(body)) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        // Drain the body so the connection can be reused.
                        let _ = response.into_body().collect().await;
                        match status.as_u16() {
                            200..=299 => Outcome::Ok,
                            429 | 503 => Outcome::Refused,
                            code => Outcome::Failed(format!("HTTP {code}")),
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}
