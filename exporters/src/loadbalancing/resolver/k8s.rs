//! The `k8s` resolver, as otelcol-contrib's: the backends are the ready
//! addresses of a Service's EndpointSlices (or their `hostname`s), each
//! with every configured port. A list-and-watch of the slices labelled
//! `kubernetes.io/service-name=<name>` in the Service's namespace keeps a
//! store of them; every change recomputes the list and hands it to the
//! balancer, so a pod that stops being ready leaves the ring within one
//! watch event instead of one DNS interval.
//!
//! Why a watch and not DNS: a headless Service's DNS answer lags behind pod
//! readiness (and is cached), and the ring must agree with the gateways
//! actually taking data; the API says so as soon as it changes.

use crate::loadbalancing::balancer::Balancer;
use crate::loadbalancing::config::{Endpoint, K8sService, is_dns_label};
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// The label the EndpointSlice controller puts on a Service's slices.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Where a pod's service account tells its namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The namespace when neither the config nor the pod tells one (otelcol's).
const FALLBACK_NAMESPACE: &str = "default";

/// Why the resolver cannot talk to the Kubernetes API at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum K8sError {
    /// Neither an in-cluster service account nor a kubeconfig was found.
    #[error(
        "cannot find the Kubernetes API (in a pod: its service account; elsewhere: KUBECONFIG or ~/.kube/config): {0}"
    )]
    Config(#[from] kube::config::InferConfigError),
    /// The config was found but no client could be built from it (TLS, proxy, ...).
    #[error("cannot build the Kubernetes API client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the API the process finds itself under: the pod's service
/// account in a cluster, else `KUBECONFIG` (or `~/.kube/config`). Connecting
/// is bounded by `timeout`; reads are not, since a watch is idle between
/// changes.
pub(crate) async fn client(timeout: Duration) -> Result<Client, K8sError> {
    let mut config = kube::Config::infer().await?;
    config.connect_timeout = Some(timeout);
    Ok(Client::try_from(config)?)
}

/// The namespace to watch: the configured one, else the pod's own, else
/// `default` (as otelcol).
pub(crate) fn namespace(service: &K8sService) -> String {
    if let Some(namespace) = &service.namespace {
        return namespace.clone();
    }
    match std::fs::read_to_string(POD_NAMESPACE_FILE) {
        Ok(text) if is_dns_label(text.trim()) => {
            let namespace = text.trim().to_string();
            tracing::info!(service = %service.name, %namespace, "resolver.k8s: no namespace given; using this pod's");
            namespace
        }
        Ok(text) => {
            tracing::warn!(
                service = %service.name,
                content = %text.trim().chars().take(80).collect::<String>(),
                "resolver.k8s: no namespace given and the pod's namespace file does not hold one; using \"default\""
            );
            FALLBACK_NAMESPACE.to_string()
        }
        Err(error) => {
            tracing::warn!(
                service = %service.name,
                %error,
                "resolver.k8s: no namespace given and not running in a pod; using \"default\""
            );
            FALLBACK_NAMESPACE.to_string()
        }
    }
}

/// The backend list of a set of slices.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Backends {
    /// Sorted, without duplicates: `address:port` (`[v6]:port`) per ready
    /// endpoint address (or `hostname:port`) and configured port.
    pub(crate) endpoints: Vec<Endpoint>,
    /// Ready endpoints left out because `return_hostnames` is on and they
    /// have no `hostname` (the Service is not a StatefulSet's headless one).
    pub(crate) without_hostname: usize,
}

/// The backends of `slices`: every endpoint not marked unready (a missing
/// `ready` condition counts as ready, as the API documents), each address
/// (or its `hostname`) with each port.
pub(crate) fn backends<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ports: &[u16],
    return_hostnames: bool,
) -> Backends {
    let mut hosts = BTreeSet::new();
    let mut without_hostname = 0;
    for endpoint in slices.into_iter().flat_map(|s| &s.endpoints) {
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        if !ready {
            continue;
        }
        if return_hostnames {
            match endpoint.hostname.as_deref().map(str::trim) {
                Some(hostname) if !hostname.is_empty() => {
                    hosts.insert(hostname.to_string());
                }
                _ => without_hostname += 1,
            }
        } else {
            hosts.extend(
                endpoint
                    .addresses
                    .iter()
                    .map(|a| a.trim())
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            );
        }
    }
    let mut endpoints: Vec<Endpoint> = hosts
        .iter()
        .flat_map(|host| ports.iter().map(move |port| join_host_port(host, *port)))
        .map(Endpoint::new)
        .collect();
    endpoints.sort();
    endpoints.dedup();
    Backends {
        endpoints,
        without_hostname,
    }
}

/// `host:port`, with an IPv6 address in brackets (Go's `net.JoinHostPort`,
/// which otelcol uses, so that both rings hash the same strings).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The Service's slices as the watch reported them. Between `Init` and
/// `InitDone` (a re-list after the watch was lost) the incoming slices are
/// collected apart and replace the store at `InitDone`, so that the
/// backends never shrink to a half-listed set.
#[derive(Debug, Default)]
pub(crate) struct SliceStore {
    /// The latest complete view, by slice name.
    slices: BTreeMap<String, EndpointSlice>,
    /// A re-list in progress.
    relisting: Option<BTreeMap<String, EndpointSlice>>,
    /// A first complete list arrived.
    synced: bool,
}

impl SliceStore {
    /// Applies a watch event; true when the complete view may have changed
    /// (the backends should be computed again).
    pub(crate) fn apply(&mut self, event: Event<EndpointSlice>) -> bool {
        match event {
            Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Event::InitApply(slice) => match &mut self.relisting {
                Some(relisting) => {
                    relisting.insert(slice_name(&slice), slice);
                    false
                }
                None => {
                    self.slices.insert(slice_name(&slice), slice);
                    self.synced
                }
            },
            Event::InitDone => {
                if let Some(relisting) = self.relisting.take() {
                    self.slices = relisting;
                }
                self.synced = true;
                true
            }
            Event::Apply(slice) => {
                self.slices.insert(slice_name(&slice), slice);
                self.synced
            }
            Event::Delete(slice) => {
                self.slices.remove(&slice_name(&slice));
                self.synced
            }
        }
    }

    /// The slices of the complete view.
    pub(crate) fn slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.slices.values()
    }
}

fn slice_name(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// Watches the Service's slices in `namespace` and sets the balancer's
/// backends on every change, until the balancer stops. `synced` is told
/// when the first complete list was applied. Watch errors are counted in
/// `otelcol_loadbalancer_num_resolutions{success="false"}` and logged
/// (rate-limited); the watcher retries with kube's default backoff while
/// the current backends stay in use.
pub(crate) async fn watch(
    balancer: Arc<Balancer>,
    client: Client,
    service: K8sService,
    namespace: String,
    mut synced: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={}", service.name);
    let config = watcher::Config::default().labels(&selector);
    let mut events = pin!(watcher::watcher(api, config).default_backoff());
    let mut store = SliceStore::default();
    tracing::info!(
        exporter = %balancer.id,
        service = %service.name,
        %namespace,
        ports = ?service.ports,
        "Watching the Service's EndpointSlices for backends"
    );
    loop {
        let next = tokio::select! {
            biased;
            _ = balancer.stop.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            None => {
                // kube's watcher does not end; should it, say so.
                tracing::error!(exporter = %balancer.id, "the EndpointSlice watch ended; the backends stay as they are");
                return;
            }
            Some(Err(error)) => {
                balancer.lb_metrics.resolutions_failed.inc();
                if let Some(suppressed) = balancer.retry_log.check() {
                    tracing::warn!(
                        exporter = %balancer.id,
                        service = %service.name,
                        %namespace,
                        error = %error,
                        suppressed,
                        "watching the Service's EndpointSlices failed; keeping the current backends and retrying"
                    );
                }
            }
            Some(Ok(event)) => {
                if store.apply(event) {
                    publish(&balancer, &store, &service);
                    if let Some(synced) = synced.take() {
                        let _ = synced.send(());
                    }
                }
            }
        }
    }
}

/// Computes the backends of the store and hands them to the balancer
/// (which ignores an unchanged list).
fn publish(balancer: &Arc<Balancer>, store: &SliceStore, service: &K8sService) {
    let backends = backends(store.slices(), &service.ports, service.return_hostnames);
    if backends.without_hostname > 0
        && let Some(suppressed) = balancer.retry_log.check()
    {
        tracing::warn!(
            exporter = %balancer.id,
            service = %service.name,
            endpoints = backends.without_hostname,
            suppressed,
            "return_hostnames is on but ready endpoints have no hostname (is the Service a StatefulSet's headless Service?); leaving them out"
        );
    }
    balancer.lb_metrics.resolutions_ok.inc();
    balancer.set_endpoints(backends.endpoints);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {SERVICE_NAME_LABEL: "gateway"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn keys(backends: &Backends) -> Vec<&str> {
        backends.endpoints.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn ready_addresses_of_every_slice_times_every_port() {
        let a = slice(
            "gateway-a",
            json!([
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "hostname": "gw-0"},
                {"addresses": ["10.0.0.9"], "conditions": {"ready": false}},
                // No condition at all: ready, as the API says.
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {}},
            ]),
        );
        let b = slice(
            "gateway-b",
            json!([
                {"addresses": ["10.0.1.1", "10.0.0.1"], "conditions": {"ready": true, "serving": true}},
                {"addresses": ["fd00::5"], "conditions": {"ready": true}},
            ]),
        );
        let one = backends([&a, &b], &[4317], false);
        assert_eq!(
            keys(&one),
            [
                "10.0.0.1:4317",
                "10.0.0.2:4317",
                "10.0.0.3:4317",
                "10.0.1.1:4317",
                "[fd00::5]:4317"
            ]
        );
        assert_eq!(one.endpoints[4].dial, "[fd00::5]:4317");
        let two = backends([&a], &[15317, 16317], false);
        assert_eq!(
            keys(&two),
            [
                "10.0.0.1:15317",
                "10.0.0.1:16317",
                "10.0.0.2:15317",
                "10.0.0.2:16317",
                "10.0.0.3:15317",
                "10.0.0.3:16317"
            ]
        );
        assert_eq!(two.without_hostname, 0);
        assert_eq!(backends([], &[4317], false), Backends::default());
    }

    #[test]
    fn return_hostnames_uses_the_hostname_field() {
        let a = slice(
            "gateway-a",
            json!([
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}, "hostname": "gateway-1"},
                {"addresses": ["10.0.0.3"], "hostname": "gateway-0"},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": false}, "hostname": "gateway-2"},
                {"addresses": ["10.0.0.5"], "conditions": {"ready": true}},
            ]),
        );
        let named = backends([&a], &[4317, 4318], true);
        assert_eq!(
            keys(&named),
            [
                "gateway-0:4317",
                "gateway-0:4318",
                "gateway-1:4317",
                "gateway-1:4318"
            ]
        );
        assert_eq!(named.without_hostname, 1);
    }

    #[test]
    fn the_store_publishes_complete_views_only() {
        let a = slice("a", json!([{"addresses": ["10.0.0.1"]}]));
        let b = slice("b", json!([{"addresses": ["10.0.0.2"]}]));
        let view = |store: &SliceStore| keys(&backends(store.slices(), &[1], false)).join(",");
        let mut store = SliceStore::default();
        assert!(!store.apply(Event::Init));
        assert!(!store.apply(Event::InitApply(a.clone())));
        assert!(!store.apply(Event::InitApply(b.clone())));
        assert!(store.apply(Event::InitDone));
        assert_eq!(view(&store), "10.0.0.1:1,10.0.0.2:1");
        // A change to one slice replaces it.
        let b2 = slice(
            "b",
            json!([{"addresses": ["10.0.0.2"], "conditions": {"ready": false}}, {"addresses": ["10.0.0.3"]}]),
        );
        assert!(store.apply(Event::Apply(b2)));
        assert_eq!(view(&store), "10.0.0.1:1,10.0.0.3:1");
        assert!(store.apply(Event::Delete(a.clone())));
        assert_eq!(view(&store), "10.0.0.3:1");
        // A re-list keeps the old view until it is done, then replaces it:
        // a slice not listed again is gone.
        assert!(!store.apply(Event::Init));
        assert!(!store.apply(Event::InitApply(a)));
        assert_eq!(view(&store), "10.0.0.3:1");
        assert!(store.apply(Event::InitDone));
        assert_eq!(view(&store), "10.0.0.1:1");
    }

    #[test]
    fn the_configured_namespace_wins() {
        let service = K8sService {
            name: "gateway".into(),
            namespace: Some("otel-system".into()),
            ports: vec![4317],
            timeout: Duration::from_secs(1),
            return_hostnames: false,
        };
        assert_eq!(namespace(&service), "otel-system");
    }
}
