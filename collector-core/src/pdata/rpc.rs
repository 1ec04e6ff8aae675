//! `google.rpc.Status` and `google.rpc.RetryInfo`, the error details OTLP
//! servers attach to refusals. Hand-written prost messages (the well-known
//! types are not part of opentelemetry-proto).

use prost::Message;
use std::time::Duration;

/// `google.rpc.Status`: the body of an OTLP/HTTP error response and the
/// `grpc-status-details-bin` trailer of a gRPC one.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Human-readable message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details, e.g. a [`RetryInfo`].
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// Type URL, e.g. `type.googleapis.com/google.rpc.RetryInfo`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: how long the client should wait before retrying.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// The delay.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past the seconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Type URL of [`RetryInfo`] inside an `Any`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// A status with a code, a message and, when known, a retry delay.
    pub fn new(code: i32, message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let details = retry_after
            .map(|delay| ProtoAny {
                type_url: RETRY_INFO_TYPE_URL.into(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                        nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
                    }),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        Self {
            code,
            message: message.into(),
            details,
        }
    }

    /// The retry delay carried in the details, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE_URL)
            .find_map(|d| {
                let info = RetryInfo::decode(d.value.as_slice()).ok()?;
                let delay = info.retry_delay?;
                let secs = u64::try_from(delay.seconds).ok()?;
                let nanos = u32::try_from(delay.nanos).ok()?;
                Some(Duration::new(secs, nanos))
            })
    }
}

/// Reads a retry delay from a gRPC status's details.
pub fn grpc_retry_delay(status: &tonic::Status) -> Option<Duration> {
    RpcStatus::decode(status.details()).ok()?.retry_delay()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_round_trips() {
        let status = RpcStatus::new(8, "full", Some(Duration::from_millis(1500)));
        let decoded = RpcStatus::decode(status.encode_to_vec().as_slice()).unwrap_or_default();
        assert_eq!(decoded.retry_delay(), Some(Duration::from_millis(1500)));
        assert_eq!(RpcStatus::new(14, "x", None).retry_delay(), None);
    }
}
