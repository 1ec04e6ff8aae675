//! The OpAMP messages, generated at build time from the specification's
//! `.proto` files (`collector-core/proto/opamp/v1`), and the few helpers the
//! extension and the test server share.

#[allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/opamp.proto.v1.rs"));
}

pub use generated::*;

/// A string attribute.
pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

/// The string value of attribute `key`, if it is one.
pub fn find_string<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// Frames a message for the WebSocket transport: the varint header (0, the
/// only header the specification defines) then the protobuf.
pub fn encode_ws_frame(message: &impl prost::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.encoded_len() + 1);
    prost::encoding::encode_varint(0, &mut out);
    message.encode_raw(&mut out);
    out
}

/// Why a WebSocket frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header is not a varint.
    #[error("bad OpAMP frame header: {0}")]
    Header(prost::DecodeError),
    /// A header other than 0.
    #[error("unsupported OpAMP frame header {0} (only 0 is defined)")]
    UnknownHeader(u64),
    /// The protobuf after the header does not decode.
    #[error("undecodable OpAMP message: {0}")]
    Message(prost::DecodeError),
}

/// Reads a WebSocket frame: header, then a message of type `M`.
pub fn decode_ws_frame<M: prost::Message + Default>(mut frame: &[u8]) -> Result<M, FrameError> {
    let header = prost::encoding::decode_varint(&mut frame).map_err(FrameError::Header)?;
    if header != 0 {
        return Err(FrameError::UnknownHeader(header));
    }
    M::decode(frame).map_err(FrameError::Message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn ws_frames_round_trip_with_a_zero_header() {
        let message = AgentToServer {
            instance_uid: vec![7; 16],
            sequence_num: 3,
            capabilities: AgentCapabilities::ReportsStatus as u64,
            ..Default::default()
        };
        let frame = encode_ws_frame(&message);
        assert_eq!(frame[0], 0, "header");
        assert_eq!(&frame[1..], message.encode_to_vec().as_slice());
        let back: AgentToServer = decode_ws_frame(&frame).expect("decode");
        assert_eq!(back, message);
        assert!(matches!(
            decode_ws_frame::<AgentToServer>(&[1, 0]),
            Err(FrameError::UnknownHeader(1))
        ));
        assert!(
            decode_ws_frame::<AgentToServer>(&[0x80]).is_err(),
            "truncated varint"
        );
    }
}
