//! PEM material as otelcol configs give it: a `*_file` path or `*_pem`
//! inline text (the file wins when both are set).

/// The file's bytes when `file` is set, else the inline text; `None` when
/// neither is. `what` names the key in the error (`tls.<what>: ...`).
pub fn read(file: &str, inline: &str, what: &str) -> Result<Option<Vec<u8>>, String> {
    if !file.is_empty() {
        return std::fs::read(file)
            .map(Some)
            .map_err(|e| format!("tls.{what}: cannot read {file}: {e}"));
    }
    Ok((!inline.is_empty()).then(|| inline.as_bytes().to_vec()))
}
