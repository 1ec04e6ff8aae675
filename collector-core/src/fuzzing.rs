//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never
//! on in the collectors): readers of untrusted bytes that are private to
//! their modules.

use crate::extension::file_storage::store;
use crate::extension::opamp::proto::AgentRemoteConfig;
use bytes::Bytes;

/// Reads a `file_storage` value file: header checks (magic, length, CRC),
/// then the value. A damaged file is an error, never a panic.
pub fn file_storage_record(data: Vec<u8>) -> Result<Bytes, String> {
    store::decode_record("fuzz", data).map_err(|e| e.to_string())
}

/// A `file_storage` value file as the store writes it (header + value), so
/// a fuzzer gets past the checksum and reaches what follows it.
pub fn file_storage_file(value: &[u8]) -> Vec<u8> {
    let mut out = store::header(value).to_vec();
    out.extend_from_slice(value);
    out
}

/// Turns an OpAMP remote config into the collector YAML to apply, with a
/// running `opamp` extension section to keep, as the extension does when a
/// server pushes a config.
pub fn opamp_remote_config(remote: &AgentRemoteConfig) -> Result<String, String> {
    let running: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("server: {ws: {endpoint: 'ws://opamp.example:4320/v1/opamp'}}")
            .map_err(|e| e.to_string())?;
    crate::extension::opamp::remote::prepare(remote, "opamp", &running)
}
