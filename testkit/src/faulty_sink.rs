//! An OTLP/gRPC traces server whose answers a test scripts: OK, an error
//! status (with `RetryInfo` when asked), partial success, a stall (the call
//! is accepted and never answered) or a slow OK. Built on the service of the
//! official protobuf definitions (`opentelemetry-proto`'s tonic server), so
//! what our exporter talks to is what otelcol's receiver speaks.
//!
//! Every call is recorded (its spans and the answer given), so a test can
//! tell what was retried, and the spans of calls answered OK are the ones
//! delivered.

use collector_core::pdata::rpc::RpcStatus;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the sink answers one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Success: the spans are delivered.
    Ok,
    /// An error status, with `RetryInfo` when `retry_after` is set.
    Status {
        code: tonic::Code,
        retry_after: Option<Duration>,
    },
    /// Success with `partial_success.rejected_spans`.
    PartialSuccess { rejected: i64 },
    /// The call is accepted and never answered.
    Stall,
    /// Success after a delay.
    Slow(Duration),
}

/// One call the sink received.
#[derive(Clone, Debug)]
pub struct Call {
    /// Span IDs of the request.
    pub span_ids: Vec<Vec<u8>>,
    /// What it was answered.
    pub answer: Answer,
}

#[derive(Debug, Default)]
struct Script {
    /// Answers for the next calls, in order.
    next: VecDeque<Answer>,
    /// The answer once `next` is empty.
    otherwise: Option<Answer>,
    calls: Vec<Call>,
}

#[derive(Clone, Debug, Default)]
struct Shared(Arc<Mutex<Script>>);

#[tonic::async_trait]
impl TraceService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let span_ids = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.span_id.clone())
            .collect();
        let answer = {
            let mut script = self.0.lock().expect("script");
            let answer = script
                .next
                .pop_front()
                .or_else(|| script.otherwise.clone())
                .unwrap_or(Answer::Ok);
            script.calls.push(Call {
                span_ids,
                answer: answer.clone(),
            });
            answer
        };
        match answer {
            Answer::Ok => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Answer::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
            Answer::PartialSuccess { rejected } => {
                Ok(tonic::Response::new(ExportTraceServiceResponse {
                    partial_success: Some(ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: "the sink rejected some spans".into(),
                    }),
                }))
            }
            Answer::Status { code, retry_after } => {
                let details = RpcStatus::new(code as i32, "scripted fault", retry_after);
                Err(tonic::Status::with_details(
                    code,
                    "scripted fault",
                    details.encode_to_vec().into(),
                ))
            }
            Answer::Stall => std::future::pending().await,
        }
    }
}

/// The running sink; stops when dropped.
pub struct FaultySink {
    /// Where it listens (plaintext h2c).
    pub address: SocketAddr,
    shared: Shared,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FaultySink {
    /// Starts on a free loopback port, answering `otherwise` to every call
    /// not scripted with [`FaultySink::then`].
    pub fn start(otherwise: Answer) -> FaultySink {
        let shared = Shared::default();
        shared.0.lock().expect("script").otherwise = Some(otherwise);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(shared.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        FaultySink {
            address,
            shared,
            _stop: stop,
        }
    }

    /// Scripts the answers of the next calls.
    pub fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.shared.0.lock().expect("script").next.extend(answers);
    }

    /// From now on, answers `answer` to every unscripted call.
    pub fn otherwise(&self, answer: Answer) {
        self.shared.0.lock().expect("script").otherwise = Some(answer);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.0.lock().expect("script").calls.clone()
    }

    /// Span IDs of the calls answered with success (OK, slow OK, partial).
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        self.calls()
            .into_iter()
            .filter(|c| {
                matches!(
                    c.answer,
                    Answer::Ok | Answer::Slow(_) | Answer::PartialSuccess { .. }
                )
            })
            .flat_map(|c| c.span_ids)
            .collect()
    }
}
