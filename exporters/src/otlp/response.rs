//! Reading a unary gRPC response: the HTTP status, the response message
//! (`Export*ServiceResponse`, for `partial_success`), and the gRPC status
//! from the trailers, or from the headers of a trailers-only response.

use super::codec::PREFIX_LEN;
use crate::helper::SendOutcome;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::{Bytes, BytesMut};
use collector_core::compression::Encoding;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tonic::Code;

/// Why a response is not a success.
#[derive(Debug)]
pub(super) enum Error {
    /// The server answered with this status (or the response broke the
    /// protocol, as `Internal`).
    Status(tonic::Status),
    /// The stream failed while the response was read.
    Transport(String),
}

/// Reads `response` to its end; `max_message` bounds the response message.
pub(super) async fn read(
    response: http::Response<tonic::body::Body>,
    max_message: usize,
) -> Result<SendOutcome, Error> {
    let (parts, mut body) = response.into_parts();
    // Trailers-only: the status is in the headers, nothing follows.
    if let Some(status) = status_from(&parts.headers) {
        return ok_or_error(status).map(|()| SendOutcome::accepted());
    }
    if parts.status != StatusCode::OK {
        return Err(Error::Status(status_of_http(parts.status)));
    }
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|status| Error::Transport(status.message().to_string()))?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > max_message + PREFIX_LEN {
                    return Err(internal(format!(
                        "response message larger than {max_message} bytes"
                    )));
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    trailers = Some(map);
                }
            }
        }
    }
    let status = trailers
        .as_ref()
        .and_then(status_from)
        .ok_or_else(|| internal("the server ended the response without a grpc-status".into()))?;
    ok_or_error(status)?;
    let message = message(data.freeze(), &parts.headers, max_message)?;
    outcome(&message)
}

/// The status the trailers (or trailers-only headers) carry, if any.
fn status_from(headers: &HeaderMap) -> Option<tonic::Status> {
    let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
    let message = headers
        .get("grpc-message")
        .map(|value| percent_decode(value.as_bytes()))
        .unwrap_or_default();
    let details = headers
        .get("grpc-status-details-bin")
        .and_then(|value| base64_decode(value.as_bytes()))
        .unwrap_or_default();
    Some(tonic::Status::with_details(code, message, details))
}

fn ok_or_error(status: tonic::Status) -> Result<(), Error> {
    match status.code() {
        Code::Ok => Ok(()),
        _ => Err(Error::Status(status)),
    }
}

fn internal(message: String) -> Error {
    Error::Status(tonic::Status::internal(message))
}

/// The gRPC code of an HTTP status without a grpc-status, as the gRPC spec
/// maps it (`doc/http-grpc-status-mapping.md`).
fn status_of_http(status: StatusCode) -> tonic::Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    tonic::Status::new(code, format!("HTTP status {status} without a grpc-status"))
}

/// The first response message in `data`, decompressed. An OK response
/// without a message (some servers send none) reads as an empty one.
fn message(data: Bytes, headers: &HeaderMap, max_message: usize) -> Result<Bytes, Error> {
    if data.is_empty() {
        return Ok(Bytes::new());
    }
    if data.len() < PREFIX_LEN {
        return Err(internal(
            "truncated gRPC message prefix in the response".into(),
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() < PREFIX_LEN + len {
        return Err(internal(format!(
            "truncated response message ({} of {len} bytes)",
            data.len() - PREFIX_LEN
        )));
    }
    let raw = data.slice(PREFIX_LEN..PREFIX_LEN + len);
    match data[0] {
        0 => Ok(raw),
        1 => {
            let encoding = headers
                .get("grpc-encoding")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("identity");
            match Encoding::from_header(encoding) {
                Some(Encoding::Identity) => Err(internal(
                    "compressed response message without a grpc-encoding".into(),
                )),
                Some(codec) => codec
                    .decompress(&raw, max_message)
                    .map(Bytes::from)
                    .map_err(|e| internal(format!("response message: {e}"))),
                None => Err(internal(format!(
                    "unsupported grpc-encoding {encoding:?} in the response"
                ))),
            }
        }
        flag => Err(internal(format!(
            "invalid compressed flag {flag} in the response"
        ))),
    }
}

/// The outcome an `Export*ServiceResponse` reports.
fn outcome(message: &[u8]) -> Result<SendOutcome, Error> {
    let response = <ExportResponse as prost::Message>::decode(message)
        .map_err(|e| internal(format!("invalid export response: {e}")))?;
    Ok(match response.partial_success {
        Some(partial) => SendOutcome::partial(
            u64::try_from(partial.rejected).unwrap_or(0),
            partial.error_message,
        ),
        None => SendOutcome::accepted(),
    })
}

/// `grpc-message` is percent-encoded UTF-8; a malformed escape is kept as is.
pub(super) fn percent_decode(raw: &[u8]) -> String {
    fn hex(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(high), Some(low)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `-bin` metadata is base64, with or without padding.
pub(super) fn base64_decode(raw: &[u8]) -> Option<Bytes> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(raw).ok().map(Bytes::from)
}

/// The common shape of `Export{Trace,Metrics,Logs}ServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) partial_success: Option<PartialSuccess>,
}

/// `Export*PartialSuccess`: `rejected_{spans,data_points,log_records}` and
/// `error_message` share their field numbers across signals.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PartialSuccess {
    #[prost(int64, tag = "1")]
    pub(crate) rejected: i64,
    #[prost(string, tag = "2")]
    pub(crate) error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"plain"), "plain");
        assert_eq!(
            percent_decode(b"queue%20full%3A%20try%20later%0A%E2%9C%93"),
            "queue full: try later\n\u{2713}"
        );
        // Malformed escapes stay as they are.
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%ff"), "\u{fffd}");
    }

    #[test]
    fn binary_metadata_with_or_without_padding() {
        assert_eq!(base64_decode(b"aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode(b"aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode(b"a"), None);
    }

    #[test]
    fn http_statuses_without_a_grpc_status() {
        for (http, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (500, Code::Unknown),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
        ] {
            let status = StatusCode::from_u16(http).unwrap();
            assert_eq!(status_of_http(status).code(), code, "{http}");
        }
    }
}
