//! What an OpAMP server sends: a WebSocket frame (varint header, then a
//! `ServerToAgent`) decoded, and a remote config in it turned into the YAML
//! the collector would apply. Errors are fine, panics are not; YAML that is
//! produced parses again.
#![no_main]

use collector_core::extension::opamp::proto::{ServerToAgent, decode_ws_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_ws_frame::<ServerToAgent>(data) else {
        return;
    };
    if let Some(remote) = &message.remote_config
        && let Ok(yaml) = collector_core::fuzzing::opamp_remote_config(remote)
    {
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&yaml).expect("prepared YAML parses");
    }
});
