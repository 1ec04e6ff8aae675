//! The `k8s` resolver against a fake Kubernetes API (testkit's
//! `FakeKubeApi`): the ring follows the Service's EndpointSlices as they
//! are listed, changed and deleted, and a lost API keeps the backends.

use super::*;
use testkit::kube_api::FakeKubeApi;

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/otel-system/endpointslices";

const K8S: &str = r#"
resolver:
  k8s:
    service: gateway.otel-system
    timeout: 5s
protocol:
  otlp:
    timeout: 1s
    retry_on_failure: {initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 5s}
"#;

/// An EndpointSlice of the `gateway` Service: (address, ready) per endpoint.
fn endpoint_slice(name: &str, endpoints: &[(&str, bool)]) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(address, ready)| {
            serde_json::json!({"addresses": [address], "conditions": {"ready": ready}})
        })
        .collect();
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "otel-system",
            "labels": {"kubernetes.io/service-name": "gateway"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "otlp-grpc", "port": 4317, "protocol": "TCP"}],
    })
}

/// A client of `api`, through a kubeconfig as a user's would be.
async fn kube_client(api: &FakeKubeApi, dir: &std::path::Path) -> kube::Client {
    let path = dir.join("kubeconfig");
    api.kubeconfig(&path);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn resolutions(ctx: &CreateContext, success: &str) -> f64 {
    ctx.host.metrics.sum(
        "otelcol_loadbalancer_num_resolutions",
        &[("resolver", "k8s"), ("success", success)],
    )
}

#[tokio::test]
async fn the_ring_follows_the_services_endpoint_slices() {
    let api = FakeKubeApi::start();
    api.apply(
        SLICES,
        endpoint_slice(
            "gateway-abc",
            &[("10.0.0.1", true), ("10.0.0.2", true), ("10.0.0.3", false)],
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/k", K8S, &fleet);
    exporter
        .start_resolving(Some(kube_client(&api, dir.path()).await))
        .await
        .unwrap();
    // Start waited for the first list.
    assert_eq!(
        exporter.ring_endpoints(),
        ["10.0.0.1:4317", "10.0.0.2:4317"]
    );
    send_200_traces_onto(&exporter, &fleet, 30, &["10.0.0.1:4317", "10.0.0.2:4317"]).await;

    // A second slice joins; in the first, one endpoint stops being ready.
    api.apply(SLICES, endpoint_slice("gateway-def", &[("10.0.0.4", true)]));
    api.apply(
        SLICES,
        endpoint_slice("gateway-abc", &[("10.0.0.1", false), ("10.0.0.2", true)]),
    );
    until("the ring follows the changes", || {
        exporter.ring_endpoints() == ["10.0.0.2:4317", "10.0.0.4:4317"]
    })
    .await;
    send_200_traces_onto(&exporter, &fleet, 31, &["10.0.0.2:4317", "10.0.0.4:4317"]).await;

    api.delete(SLICES, "gateway-def");
    until("the deleted slice's backend leaves", || {
        exporter.ring_endpoints() == ["10.0.0.2:4317"]
    })
    .await;
    let m = &ctx.host.metrics;
    assert_eq!(
        m.value(
            "otelcol_loadbalancer_num_backends",
            &[("exporter", "loadbalancing/k"), ("resolver", "k8s")]
        ),
        Some(1.0)
    );
    assert!(resolutions(&ctx, "true") >= 3.0);
    assert_eq!(resolutions(&ctx, "false"), 0.0);
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.starts_with(SLICES)
            && r.contains("labelSelector=kubernetes.io%2Fservice-name%3Dgateway")
            && r.contains("watch=true")),
        "{requests:?}"
    );
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(exporter.balancer.held(), 0);
}

#[tokio::test]
async fn a_lost_api_is_counted_and_the_backends_stay() {
    let api = FakeKubeApi::start();
    api.apply(SLICES, endpoint_slice("gateway-abc", &[("10.0.0.1", true)]));
    let dir = tempfile::tempdir().unwrap();
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/k", K8S, &fleet);
    exporter
        .start_resolving(Some(kube_client(&api, dir.path()).await))
        .await
        .unwrap();
    assert_eq!(exporter.ring_endpoints(), ["10.0.0.1:4317"]);
    drop(api);
    until("the failures are counted", || {
        resolutions(&ctx, "false") >= 1.0
    })
    .await;
    assert_eq!(exporter.ring_endpoints(), ["10.0.0.1:4317"]);
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_kubernetes_api_start_fails() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/k", K8S, &fleet);
    // Only when this process has no kubeconfig and is not in a pod.
    if kube::Config::infer().await.is_ok() {
        return;
    }
    let error = exporter.start().await.unwrap_err();
    assert!(error.to_string().contains("resolver.k8s"), "{error}");
}

/// Sends 200 traces of 3 spans (IDs from `seed`) in requests of 20 traces,
/// waits until the fleet has them all, and checks each trace landed whole
/// on the owner the ring over `ring_keys` names.
async fn send_200_traces_onto(
    exporter: &LoadBalancingExporter,
    fleet: &Fleet,
    seed: u64,
    ring_keys: &[&str],
) {
    let before = fleet.span_count();
    let traces = ids(seed, 200);
    for chunk in traces.chunks(20) {
        send(exporter, chunk, 3).await;
    }
    until("the traces delivered", || {
        fleet.span_count() == before + 600
    })
    .await;
    assert_placed(fleet, &traces, &HashRing::new(ring_keys));
}
