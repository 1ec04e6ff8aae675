//! Why a stage did not accept data, and what the sender should do about it.

use std::time::Duration;

/// The class of a consume failure; maps onto gRPC codes and HTTP statuses the
/// way otelcol's OTLP receiver maps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The data is malformed; retrying it cannot succeed (gRPC InvalidArgument, HTTP 400).
    InvalidArgument,
    /// A bounded queue is full (gRPC ResourceExhausted, HTTP 429): back off and retry.
    ResourceExhausted,
    /// Temporarily unable to accept, e.g. the memory limiter refuses or the
    /// collector is shutting down (gRPC Unavailable, HTTP 503).
    Unavailable,
    /// A deadline passed before the data was accepted (gRPC DeadlineExceeded, HTTP 503).
    DeadlineExceeded,
    /// A failure that is not the sender's fault and is not known to be
    /// transient (gRPC Internal, HTTP 500). Not retried.
    Internal,
    /// Rejected for missing credentials (gRPC Unauthenticated, HTTP 401).
    Unauthenticated,
    /// Rejected by policy (gRPC PermissionDenied, HTTP 403).
    PermissionDenied,
}

/// A refused or failed `consume`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConsumeError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
}

impl ConsumeError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A full queue: the sender should back off for `retry_after` when known.
    pub fn resource_exhausted(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            kind: ErrorKind::ResourceExhausted,
            message: message.into(),
            retry_after,
        }
    }

    /// A temporary refusal.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Malformed data that no retry will fix.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Sets the delay the sender should wait before retrying.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The class of the failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The delay the sender should wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether sending the same data again may succeed. Per the OTLP spec,
    /// ResourceExhausted, Unavailable and DeadlineExceeded are retryable;
    /// InvalidArgument, Internal and the auth errors are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ResourceExhausted | ErrorKind::Unavailable | ErrorKind::DeadlineExceeded
        )
    }

    /// The gRPC status code of this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            ErrorKind::Internal => tonic::Code::Internal,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
        }
    }

    /// The HTTP status of this error, as otelcol's OTLP/HTTP receiver answers.
    pub fn http_status(&self) -> http::StatusCode {
        match self.kind {
            ErrorKind::InvalidArgument => http::StatusCode::BAD_REQUEST,
            ErrorKind::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => http::StatusCode::FORBIDDEN,
        }
    }

    /// Classifies a gRPC status received from a downstream server.
    pub fn from_grpc_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let kind = match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Unimplemented => ErrorKind::InvalidArgument,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::Unavailable
            | Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Internal | Code::Unknown | Code::Ok => ErrorKind::Internal,
        };
        Self::new(kind, format!("{}: {}", status.code(), status.message()))
    }
}
