//! The config used without `--config`, from the variables the chart sets:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
//! `http/protobuf` or `http/json`, as the OTel spec defines them; unset, a
//! port of 4317 means gRPC as the old agent inferred, anything else HTTP).
//! The `ebpf` receiver reads its own variables (`OTEL_EBPF_*`).

/// The endpoint when none is set: a collector on the same host.
const DEFAULT_ENDPOINT: &str = "http://localhost:4317";

/// How the agent exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// The port of an endpoint URL or `host:port`, when it has one.
fn port_of(endpoint: &str) -> Option<u16> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (_, port) = authority.rsplit_once(':')?;
    port.parse().ok()
}

fn protocol(endpoint: &str, declared: Option<&str>) -> Result<Protocol, String> {
    match declared.map(str::trim) {
        Some("grpc") => Ok(Protocol::Grpc),
        Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some(other) if !other.is_empty() => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not one of grpc, http/protobuf, http/json"
        )),
        _ if port_of(endpoint) == Some(4317) => Ok(Protocol::Grpc),
        _ => Ok(Protocol::HttpProtobuf),
    }
}

/// YAML double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// The config for an endpoint and declared protocol.
fn render(endpoint: &str, declared: Option<&str>) -> Result<String, String> {
    let (exporter, section) = match protocol(endpoint, declared)? {
        Protocol::Grpc => {
            // A bare host:port from the env means plaintext, as the SDKs
            // read OTEL_EXPORTER_OTLP_ENDPOINT.
            let url = if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            };
            ("otlp", format!("    endpoint: {}\n", quoted(&url)))
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            let url = if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            };
            let encoding = if declared.map(str::trim) == Some("http/json") {
                "json"
            } else {
                "proto"
            };
            (
                "otlphttp",
                format!("    endpoint: {}\n    encoding: {encoding}\n", quoted(&url)),
            )
        }
    };
    Ok(format!(
        "receivers:\n  ebpf: {{}}\nprocessors:\n  batch: {{}}\nexporters:\n  {exporter}:\n{section}service:\n  pipelines:\n    traces:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{exporter}]\n    metrics:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{exporter}]\n"
    ))
}

/// The default config from the environment, or why the environment is wrong.
pub(crate) fn from_env() -> Result<String, String> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let declared = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok();
    render(endpoint.trim(), declared.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_follows_the_spec_then_the_port() {
        assert_eq!(protocol("http://gw:4318", Some("grpc")), Ok(Protocol::Grpc));
        assert_eq!(
            protocol("http://gw:4317", Some("http/protobuf")),
            Ok(Protocol::HttpProtobuf)
        );
        assert_eq!(protocol("http://gw:4317", None), Ok(Protocol::Grpc));
        assert_eq!(protocol("gw:4317", Some("")), Ok(Protocol::Grpc));
        assert_eq!(protocol("http://gw:4318", None), Ok(Protocol::HttpProtobuf));
        assert_eq!(protocol("http://gw", None), Ok(Protocol::HttpProtobuf));
        assert!(protocol("http://gw:4317", Some("thrift")).is_err());
    }

    #[test]
    fn renders_an_exporter_for_the_protocol() {
        let grpc = render("gateway.otel-system.svc:4317", None).expect("renders");
        assert!(
            grpc.contains("  otlp:\n    endpoint: \"http://gateway.otel-system.svc:4317\"\n"),
            "{grpc}"
        );
        assert!(grpc.contains("exporters: [otlp]"));
        let http = render("http://gw:4318", Some("http/json")).expect("renders");
        assert!(
            http.contains("  otlphttp:\n    endpoint: \"http://gw:4318\"\n    encoding: json\n"),
            "{http}"
        );
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&http).expect("valid YAML");
        assert!(parsed["service"]["pipelines"]["metrics"].is_mapping());
    }
}
