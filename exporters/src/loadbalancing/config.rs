//! Config of the `loadbalancing` exporter, with otelcol's keys: `resolver`
//! (exactly one of `static`, `dns`, `k8s`, `aws_cloud_map`), `routing_key`,
//! `routing_attributes`, `protocol.otlp` (an `otlp` exporter config without
//! `endpoint`) and the exporter helper's `timeout`, `retry_on_failure` and
//! `sending_queue` at the top level.

use crate::helper::{QueueConfig, RetryConfig, Sizer};
use crate::otlp::OtlpConfig;
use collector_core::config::{ConfigError, duration};
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The port the `dns` and `static` resolvers dial when none is given.
pub const DEFAULT_PORT: u16 = 4317;
/// Default `resolver.dns.interval`.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);
/// Default `resolver.dns.timeout` (and `resolver.k8s.timeout`).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(1);

/// `exporters.loadbalancing`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancingConfig {
    /// Where the backends come from.
    pub resolver: ResolverConfig,
    /// What decides a backend (default: `traceID` for spans, `service` for
    /// metrics and logs, as otelcol).
    pub routing_key: Option<RoutingKey>,
    /// The attributes of `routing_key: attributes`, in order.
    pub routing_attributes: Vec<String>,
    /// The exporter used for each backend.
    pub protocol: ProtocolConfig,
    /// The longest a `consume` waits, when it has to wait for queue room
    /// (`block_on_overflow`) or for delivery (no queue at either level);
    /// 0 (the default, as otelcol's) means no limit.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How long data may keep being re-routed before it is dropped; off by
    /// default (as otelcol's), which means: until delivered or shutdown.
    pub retry_on_failure: TopLevelRetry,
    /// A bound on everything the exporter holds, over all backends; off by
    /// default (as otelcol's).
    pub sending_queue: TopLevelQueue,
}

/// `protocol`: only `otlp` exists.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// The `otlp` exporter config each backend's exporter is built from;
    /// its `endpoint` is replaced by the backend's.
    pub otlp: OtlpConfig,
}

/// `resolver`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// A fixed list of backends.
    #[serde(rename = "static")]
    pub static_list: Option<StaticResolver>,
    /// The addresses (A and AAAA) of a DNS name, resolved periodically.
    pub dns: Option<DnsResolver>,
    /// The ready endpoints of a Kubernetes Service, watched through the API.
    pub k8s: Option<K8sResolver>,
    /// AWS Cloud Map. Not supported.
    pub aws_cloud_map: Option<serde::de::IgnoredAny>,
}

/// `resolver.static`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticResolver {
    /// `host[:port]` of each backend (port 4317 when absent).
    pub hostnames: Vec<String>,
}

/// `resolver.dns`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsResolver {
    /// The name to resolve (a headless Service's name in Kubernetes).
    pub hostname: String,
    /// The port of every backend, as a string or a number. When absent,
    /// 4317 is dialed but, as in otelcol, the ring places the bare address.
    #[serde(deserialize_with = "port_text")]
    pub port: Option<String>,
    /// How often to resolve (default 5s).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Limit of one resolution (default 1s).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for DnsResolver {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            port: None,
            interval: DEFAULT_DNS_INTERVAL,
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

/// `resolver.k8s`: the ready addresses of a Service's EndpointSlices,
/// watched through the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sResolver {
    /// `name[.namespace]` of the Service; without a namespace, the pod's own
    /// (from its service account), else `default`.
    pub service: String,
    /// The ports to send to (default 4317); each makes a backend per address.
    pub ports: Vec<u16>,
    /// Limit of connecting to the API server, and how long start-up waits
    /// for the first list of endpoints (default 1s).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Use the endpoints' `hostname` instead of their addresses.
    pub return_hostnames: bool,
}

impl Default for K8sResolver {
    fn default() -> Self {
        Self {
            service: String::new(),
            ports: vec![DEFAULT_PORT],
            timeout: DEFAULT_DNS_TIMEOUT,
            return_hostnames: false,
        }
    }
}

/// `routing_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum RoutingKey {
    /// The trace ID of each span (or log record).
    #[serde(rename = "traceID")]
    TraceId,
    /// The `service.name` resource attribute.
    #[serde(rename = "service")]
    Service,
    /// All resource attributes.
    #[serde(rename = "resource")]
    Resource,
    /// The metric name.
    #[serde(rename = "metric")]
    Metric,
    /// The metric stream: resource, scope, metric name and point attributes.
    #[serde(rename = "streamID")]
    StreamId,
    /// The values of `routing_attributes`.
    #[serde(rename = "attributes")]
    Attributes,
}

impl RoutingKey {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingKey::TraceId => "traceID",
            RoutingKey::Service => "service",
            RoutingKey::Resource => "resource",
            RoutingKey::Metric => "metric",
            RoutingKey::StreamId => "streamID",
            RoutingKey::Attributes => "attributes",
        }
    }
}

/// Top-level `retry_on_failure`, off unless `enabled: true` is written
/// (otelcol's defaults for this exporter). Data a backend could not take is
/// always routed again (to the trace's new owner); when this is enabled,
/// data still undelivered `max_elapsed_time` after it was accepted is
/// dropped (counted). Its intervals space the rounds while every backend is
/// failing (defaults 5s growing to 30s, also when not enabled).
#[derive(Clone, Debug, PartialEq)]
pub struct TopLevelRetry(pub RetryConfig);

impl Default for TopLevelRetry {
    fn default() -> Self {
        Self(RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        })
    }
}

/// Top-level `sending_queue`, off unless `enabled: true` is written. When
/// on, `queue_size` (in its `sizer`'s units) bounds everything the exporter
/// holds over all backends, and `num_consumers` sets the workers per backend
/// when `protocol.otlp.sending_queue` is off.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLevelQueue(pub QueueConfig);

impl Default for TopLevelQueue {
    fn default() -> Self {
        Self(QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        })
    }
}

/// The keys of `retry_on_failure`, each optional, so that defaults can
/// differ from the exporter helper's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryKeys {
    enabled: Option<bool>,
    #[serde(default, with = "duration::option")]
    initial_interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    max_interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    max_elapsed_time: Option<Duration>,
    multiplier: Option<f64>,
    randomization_factor: Option<f64>,
}

impl<'de> Deserialize<'de> for TopLevelRetry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(keys) = Option::<RetryKeys>::deserialize(deserializer)? else {
            return Ok(Self::default());
        };
        let mut retry = Self::default().0;
        if let Some(v) = keys.enabled {
            retry.enabled = v;
        }
        if let Some(v) = keys.initial_interval {
            retry.initial_interval = v;
        }
        if let Some(v) = keys.max_interval {
            retry.max_interval = v;
        }
        if let Some(v) = keys.max_elapsed_time {
            retry.max_elapsed_time = v;
        }
        if let Some(v) = keys.multiplier {
            retry.multiplier = v;
        }
        if let Some(v) = keys.randomization_factor {
            retry.randomization_factor = v;
        }
        Ok(Self(retry))
    }
}

/// The keys of `sending_queue`, each optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueKeys {
    enabled: Option<bool>,
    num_consumers: Option<usize>,
    queue_size: Option<u64>,
    sizer: Option<Sizer>,
    block_on_overflow: Option<bool>,
    storage: Option<String>,
}

impl<'de> Deserialize<'de> for TopLevelQueue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(keys) = Option::<QueueKeys>::deserialize(deserializer)? else {
            return Ok(Self::default());
        };
        let mut queue = Self::default().0;
        if let Some(v) = keys.enabled {
            queue.enabled = v;
        }
        if let Some(v) = keys.num_consumers {
            queue.num_consumers = v;
        }
        if let Some(v) = keys.queue_size {
            queue.queue_size = v;
        }
        if let Some(v) = keys.sizer {
            queue.sizer = v;
        }
        if let Some(v) = keys.block_on_overflow {
            queue.block_on_overflow = v;
        }
        queue.storage = keys.storage;
        Ok(Self(queue))
    }
}

/// A port written as a string (`'4317'`, as the chart does) or a number.
fn port_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    Ok(match Option::<Raw>::deserialize(deserializer)? {
        None => None,
        Some(Raw::Text(text)) if text.trim().is_empty() => None,
        Some(Raw::Text(text)) => Some(text.trim().to_string()),
        Some(Raw::Number(n)) => Some(n.to_string()),
    })
}

/// The resolver, checked and with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Resolver {
    /// Fixed endpoints.
    Static(Vec<Endpoint>),
    /// A DNS name.
    Dns {
        hostname: String,
        port: Option<u16>,
        interval: Duration,
        timeout: Duration,
    },
    /// A Kubernetes Service's EndpointSlices.
    K8s(K8sService),
}

/// `resolver.k8s`, checked and with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct K8sService {
    /// The Service's name (the `kubernetes.io/service-name` label's value).
    pub(crate) name: String,
    /// The namespace written after the name; `None`: the pod's own, found
    /// when the resolver starts.
    pub(crate) namespace: Option<String>,
    /// Each address makes one backend per port.
    pub(crate) ports: Vec<u16>,
    pub(crate) timeout: Duration,
    pub(crate) return_hostnames: bool,
}

impl Resolver {
    /// The `resolver` label of the self-metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Resolver::Static(_) => "static",
            Resolver::Dns { .. } => "dns",
            Resolver::K8s(_) => "k8s",
        }
    }
}

/// A backend: the string the ring places and the address the exporter dials.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The ring's string: what the resolver produced (`10.0.0.5:4317`).
    pub key: String,
    /// `host:port` to connect to (the key, with port 4317 added when it has none).
    pub dial: String,
}

impl Endpoint {
    /// An endpoint from a resolver's string, adding the default port to dial
    /// when it has none (as otelcol's `endpointWithPort`).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let dial = if has_port(&key) {
            key.clone()
        } else if key.matches(':').count() > 1 && !key.starts_with('[') {
            // A bare IPv6 address.
            format!("[{key}]:{DEFAULT_PORT}")
        } else {
            format!("{key}:{DEFAULT_PORT}")
        };
        Self { key, dial }
    }
}

fn has_port(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    if let Some(after_bracket) = rest.strip_prefix('[') {
        // [v6] or [v6]:port
        return after_bracket
            .split_once(']')
            .is_some_and(|(_, tail)| tail.starts_with(':'));
    }
    // A bare IPv6 address has several colons and no port.
    rest.matches(':').count() == 1
}

impl LoadBalancingConfig {
    /// Checks the config; paths are relative to the exporter's section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolver().map(|_| ())?;
        if self.routing_key == Some(RoutingKey::Attributes) && self.routing_attributes.is_empty() {
            return Err(ConfigError::new(
                "routing_attributes",
                "routing_key \"attributes\" needs at least one attribute name",
            ));
        }
        let otlp = &self.protocol.otlp;
        if let Some(batch) = &otlp.sending_queue.batch {
            batch
                .validate()
                .map_err(|e| e.under("protocol.otlp.sending_queue.batch"))?;
        }
        // `sending_queue.batch` is ours here (the plain otlp exporter refuses it).
        let mut plain = otlp.clone();
        plain.sending_queue.batch = None;
        plain
            .validate(false)
            .map_err(|e| e.under("protocol.otlp"))?;
        no_storage(&otlp.sending_queue).map_err(|e| e.under("protocol.otlp.sending_queue"))?;
        self.retry_on_failure
            .0
            .validate()
            .map_err(|e| e.under("retry_on_failure"))?;
        no_storage(&self.sending_queue.0).map_err(|e| e.under("sending_queue"))?;
        self.sending_queue
            .0
            .validate()
            .map_err(|e| e.under("sending_queue"))?;
        Ok(())
    }

    /// The one configured resolver, checked.
    pub(crate) fn resolver(&self) -> Result<Resolver, ConfigError> {
        let r = &self.resolver;
        let set = [
            r.static_list.is_some(),
            r.dns.is_some(),
            r.k8s.is_some(),
            r.aws_cloud_map.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set == 0 {
            return Err(ConfigError::new(
                "resolver",
                "no resolver configured: set one of static, dns, k8s or aws_cloud_map",
            ));
        }
        if set > 1 {
            return Err(ConfigError::new(
                "resolver",
                "only one resolver may be configured (one of static, dns, k8s or aws_cloud_map)",
            ));
        }
        if let Some(list) = &r.static_list {
            return static_resolver(list).map_err(|e| e.under("resolver.static"));
        }
        if let Some(dns) = &r.dns {
            return dns_resolver(dns).map_err(|e| e.under("resolver.dns"));
        }
        if let Some(k8s) = &r.k8s {
            return k8s_resolver(k8s).map_err(|e| e.under("resolver.k8s"));
        }
        Err(ConfigError::new(
            "resolver.aws_cloud_map",
            "the aws_cloud_map resolver is not supported by this collector (use static or dns)",
        ))
    }
}

fn no_storage(queue: &QueueConfig) -> Result<(), ConfigError> {
    if queue.storage.is_some() {
        return Err(ConfigError::new(
            "storage",
            "persistent queues are not supported by the loadbalancing exporter yet",
        ));
    }
    Ok(())
}

fn static_resolver(list: &StaticResolver) -> Result<Resolver, ConfigError> {
    if list.hostnames.is_empty() {
        return Err(ConfigError::new(
            "hostnames",
            "must list at least one backend (host:port)",
        ));
    }
    let probe = OtlpConfig::default();
    let mut endpoints = Vec::new();
    for (i, hostname) in list.hostnames.iter().enumerate() {
        let endpoint = Endpoint::new(hostname.trim());
        probe
            .target(&endpoint.dial)
            .map_err(|m| ConfigError::new(format!("hostnames[{i}]"), m))?;
        endpoints.push(endpoint);
    }
    endpoints.sort();
    endpoints.dedup();
    Ok(Resolver::Static(endpoints))
}

fn dns_resolver(dns: &DnsResolver) -> Result<Resolver, ConfigError> {
    let hostname = dns.hostname.trim();
    if hostname.is_empty() {
        return Err(ConfigError::new(
            "hostname",
            "must be set (the DNS name whose addresses are the backends)",
        ));
    }
    if hostname.contains(['/', ' ']) || hostname.contains("://") {
        return Err(ConfigError::new(
            "hostname",
            format!("{hostname:?} is not a host name"),
        ));
    }
    let port = match &dns.port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                return Err(ConfigError::new(
                    "port",
                    format!("{text:?} is not a port number (1-65535)"),
                ));
            }
        },
    };
    Ok(Resolver::Dns {
        hostname: hostname.to_string(),
        port,
        // Zero means the default, as in otelcol.
        interval: if dns.interval.is_zero() {
            DEFAULT_DNS_INTERVAL
        } else {
            dns.interval
        },
        timeout: if dns.timeout.is_zero() {
            DEFAULT_DNS_TIMEOUT
        } else {
            dns.timeout
        },
    })
}

fn k8s_resolver(k8s: &K8sResolver) -> Result<Resolver, ConfigError> {
    let service = k8s.service.trim();
    if service.is_empty() {
        return Err(ConfigError::new(
            "service",
            "must be set (name[.namespace] of the Service)",
        ));
    }
    // As otelcol: everything after the first dot is the namespace.
    let (name, namespace) = match service.split_once('.') {
        Some((name, namespace)) => (name, Some(namespace)),
        None => (service, None),
    };
    if !is_dns_label(name) || !namespace.is_none_or(is_dns_label) {
        return Err(ConfigError::new(
            "service",
            format!(
                "{service:?} is not name[.namespace] of a Service (lowercase letters, digits and '-')"
            ),
        ));
    }
    if let Some(i) = k8s.ports.iter().position(|p| *p == 0) {
        return Err(ConfigError::new(
            format!("ports[{i}]"),
            "must be a port number (1-65535)",
        ));
    }
    let mut ports = k8s.ports.clone();
    if ports.is_empty() {
        ports.push(DEFAULT_PORT);
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(Resolver::K8s(K8sService {
        name: name.to_string(),
        namespace: namespace.map(str::to_string),
        ports,
        // Zero means the default, as in otelcol.
        timeout: if k8s.timeout.is_zero() {
            DEFAULT_DNS_TIMEOUT
        } else {
            k8s.timeout
        },
        return_hostnames: k8s.return_hostnames,
    }))
}

/// A Kubernetes object name of the DNS-label kind (Services and namespaces):
/// it goes into a label selector and a URL path, so nothing else may pass.
pub(crate) fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> LoadBalancingConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_the_charts_config() {
        let config = parse(
            r#"
resolver:
  dns:
    hostname: gateway-collector-headless.otel-system.svc.cluster.local
    port: '4317'
protocol:
  otlp:
    tls:
      insecure: true
"#,
        );
        config.validate().unwrap();
        assert_eq!(
            config.resolver().unwrap(),
            Resolver::Dns {
                hostname: "gateway-collector-headless.otel-system.svc.cluster.local".into(),
                port: Some(4317),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
            }
        );
        assert!(config.protocol.otlp.tls.insecure);
        assert_eq!(config.routing_key, None);
        assert!(!config.sending_queue.0.enabled);
        assert!(!config.retry_on_failure.0.enabled);
        assert!(config.timeout.is_zero());
    }

    #[test]
    fn port_as_number_and_defaults() {
        let config = parse("resolver: {dns: {hostname: gw, port: 4318, interval: 200ms}}");
        assert!(matches!(
            config.resolver().unwrap(),
            Resolver::Dns { port: Some(4318), interval, .. } if interval == Duration::from_millis(200)
        ));
        let config = parse("resolver: {dns: {hostname: gw}}");
        assert!(matches!(
            config.resolver().unwrap(),
            Resolver::Dns { port: None, .. }
        ));
        let bad = parse("resolver: {dns: {hostname: gw, port: 'http'}}");
        assert_eq!(bad.validate().unwrap_err().path, "resolver.dns.port");
    }

    #[test]
    fn static_endpoints_get_the_default_port_to_dial() {
        let config = parse("resolver: {static: {hostnames: [b:4317, a, '[::1]:9', '::1']}}");
        let Resolver::Static(endpoints) = config.resolver().unwrap() else {
            panic!()
        };
        let pairs: Vec<(&str, &str)> = endpoints
            .iter()
            .map(|e| (e.key.as_str(), e.dial.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("::1", "[::1]:4317"),
                ("[::1]:9", "[::1]:9"),
                ("a", "a:4317"),
                ("b:4317", "b:4317"),
            ]
        );
    }

    #[test]
    fn exactly_one_resolver() {
        let err = parse("protocol: {otlp: {}}").validate().unwrap_err();
        assert_eq!(err.path, "resolver");
        let err = parse("resolver: {static: {hostnames: [a:1]}, dns: {hostname: b}}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "resolver");
        assert!(err.message.contains("only one"), "{err}");
        let err = parse("resolver: {k8s: {ports: [1]}}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "resolver.k8s.service");
        assert!(
            serde_yaml_ng::from_str::<LoadBalancingConfig>("resolver: {k8s: {bogus: 1}}").is_err()
        );
        let err = parse("resolver: {aws_cloud_map: {namespace: x, service_name: y}}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "resolver.aws_cloud_map");
        let err = parse("resolver: {static: {hostnames: []}}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "resolver.static.hostnames");
        let err = parse("resolver: {dns: {port: 1}}").validate().unwrap_err();
        assert_eq!(err.path, "resolver.dns.hostname");
    }

    #[test]
    fn k8s_resolver_keys_and_defaults() {
        let config = parse(
            "resolver: {k8s: {service: lb-svc.kube-public, ports: [16317, 15317], timeout: 2s, return_hostnames: true}}",
        );
        config.validate().unwrap();
        assert_eq!(
            config.resolver().unwrap(),
            Resolver::K8s(K8sService {
                name: "lb-svc".into(),
                namespace: Some("kube-public".into()),
                ports: vec![15317, 16317],
                timeout: Duration::from_secs(2),
                return_hostnames: true,
            })
        );
        assert_eq!(config.resolver().unwrap().label(), "k8s");
        let config = parse("resolver: {k8s: {service: gateway}}");
        assert_eq!(
            config.resolver().unwrap(),
            Resolver::K8s(K8sService {
                name: "gateway".into(),
                namespace: None,
                ports: vec![4317],
                timeout: Duration::from_secs(1),
                return_hostnames: false,
            })
        );
        // An empty list and a zero timeout mean the defaults.
        let config = parse("resolver: {k8s: {service: gateway.otel, ports: [], timeout: 0s}}");
        let Resolver::K8s(service) = config.resolver().unwrap() else {
            panic!()
        };
        assert_eq!(service.ports, [4317]);
        assert_eq!(service.timeout, Duration::from_secs(1));
        for bad in ["'Gateway.otel'", "'gw/x'", "'gw.'", "'-gw'", "'gw,a=b'"] {
            let err = parse(&format!("resolver: {{k8s: {{service: {bad}}}}}"))
                .validate()
                .unwrap_err();
            assert_eq!(err.path, "resolver.k8s.service", "{bad}");
        }
        let err = parse("resolver: {k8s: {service: gw, ports: [4317, 0]}}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "resolver.k8s.ports[1]");
        assert!(
            serde_yaml_ng::from_str::<LoadBalancingConfig>(
                "resolver: {k8s: {service: gw, ports: [70000]}}"
            )
            .is_err()
        );
    }

    #[test]
    fn routing_keys_and_top_level_helper_keys() {
        let config = parse(
            r#"
resolver: {static: {hostnames: [a:4317]}}
routing_key: attributes
routing_attributes: [http.route, span.kind]
timeout: 10s
retry_on_failure: {enabled: true, max_elapsed_time: 60s}
sending_queue: {enabled: true, queue_size: 50, sizer: items}
protocol:
  otlp:
    timeout: 1s
    compression: zstd
    sending_queue: {enabled: false}
"#,
        );
        config.validate().unwrap();
        assert_eq!(config.routing_key, Some(RoutingKey::Attributes));
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert!(config.retry_on_failure.0.enabled);
        assert_eq!(
            config.retry_on_failure.0.max_elapsed_time,
            Duration::from_secs(60)
        );
        assert_eq!(config.sending_queue.0.queue_size, 50);
        assert_eq!(config.sending_queue.0.sizer, Sizer::Items);
        assert!(!config.protocol.otlp.sending_queue.enabled);
        // A section without `enabled` stays off, as in otelcol.
        let config = parse("resolver: {dns: {hostname: a}}\nsending_queue: {queue_size: 5}");
        assert!(!config.sending_queue.0.enabled);
        for key in ["traceID", "service", "resource", "metric", "streamID"] {
            let config = parse(&format!(
                "resolver: {{dns: {{hostname: a}}}}\nrouting_key: {key}"
            ));
            assert_eq!(config.routing_key.map(RoutingKey::as_str), Some(key));
        }
        assert!(
            serde_yaml_ng::from_str::<LoadBalancingConfig>("routing_key: traceid").is_err(),
            "keys are case-sensitive, as in otelcol"
        );
        let err = parse("resolver: {dns: {hostname: a}}\nrouting_key: attributes")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "routing_attributes");
        let err = parse("resolver: {dns: {hostname: a}}\nsending_queue: {storage: file_storage}")
            .validate()
            .unwrap_err();
        assert_eq!(err.path, "sending_queue.storage");
        let err = parse(
            "resolver: {dns: {hostname: a}}\nprotocol: {otlp: {sending_queue: {storage: file_storage}}}",
        )
        .validate()
        .unwrap_err();
        assert_eq!(err.path, "protocol.otlp.sending_queue.storage");
        assert!(
            serde_yaml_ng::from_str::<LoadBalancingConfig>(
                "resolver: {dns: {hostname: a}}\nprotocol: {otlp: {compression: brotli}}"
            )
            .is_err()
        );
    }
}
