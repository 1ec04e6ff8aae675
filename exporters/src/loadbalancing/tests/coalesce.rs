//! Coalescing of split parts per backend (`protocol.otlp.sending_queue.batch`):
//! the accumulator itself, then through the exporter (shutdown, removal).

use super::super::backend::{Backend, BackendMetrics, Coalesce, Item};
use super::*;
use collector_core::observe::MetricsRegistry;

/// A backend whose sender is never called (the tests pop its queue).
fn backend(coalesce: Coalesce, capacity: Option<u64>) -> Backend {
    let fleet = Arc::new(Fleet::default());
    let registry = MetricsRegistry::new();
    Backend::new(
        Endpoint::new("a:4317"),
        Arc::new(FakeSender {
            endpoint: "a:4317".into(),
            fleet,
        }),
        BackendMetrics::new(&registry, "loadbalancing/c", "a:4317"),
        capacity,
        crate::helper::Sizer::Items,
        Some(coalesce),
        Arc::new(Notify::new()),
    )
}

/// A newly admitted part of `traces` traces of 2 spans each.
fn part(seed: u64, traces: usize) -> Item {
    Item {
        payload: traces_payload(&ids(seed, traces), 2),
        accepted: tokio::time::Instant::now(),
        rounds: 0,
        not_before: None,
        completion: None,
        global_units: 0,
        backend_units: 0,
    }
}

fn coalesce(flush_timeout: Duration, min_size: u64, max_size: u64) -> Coalesce {
    Coalesce {
        flush_timeout,
        sizer: crate::helper::Sizer::Items,
        min_size,
        max_size,
    }
}

/// The queue's next item if one is ready within `wait` (paused clock).
async fn pop_within(backend: &Backend, wait: Duration) -> Option<Item> {
    tokio::time::timeout(wait, backend.pop())
        .await
        .ok()
        .flatten()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn parts_merge_until_min_size_then_go_at_once() {
    let backend = backend(coalesce(HOUR, 20, 0), Some(100));
    // 8 spans each: the first opens, the next two are appended; the third
    // brings the open item to 24 >= 20 and closes it.
    assert!(!backend.push_admitted(part(1, 4)).unwrap());
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_none()
    );
    assert!(backend.push_admitted(part(2, 4)).unwrap());
    assert_eq!(backend.queued_units(), 16);
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_none()
    );
    assert!(backend.push_admitted(part(3, 4)).unwrap());
    let merged = pop_within(&backend, Duration::from_millis(1))
        .await
        .expect("a full item is sent without waiting");
    assert_eq!(merged.payload.item_count(), 24);
    assert_eq!(merged.backend_units, 24);
    assert_eq!(backend.queued_units(), 0);
    // Every span is there once.
    let spans: BTreeSet<Vec<u8>> = placed_spans(&merged.payload)
        .into_iter()
        .map(|(_, _, s)| s.span_id)
        .collect();
    assert_eq!(spans.len(), 24);
    // The next part opens a new item.
    assert!(!backend.push_admitted(part(4, 4)).unwrap());
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn an_item_never_grows_past_max_size() {
    let backend = backend(coalesce(HOUR, 30, 20), None);
    assert!(!backend.push_admitted(part(1, 4)).unwrap());
    assert!(backend.push_admitted(part(2, 4)).unwrap());
    // 16 + 8 > 20: the open item is closed as it is, the part opens the next.
    assert!(!backend.push_admitted(part(3, 4)).unwrap());
    let first = pop_within(&backend, Duration::from_millis(1))
        .await
        .expect("the closed item goes");
    assert_eq!(first.payload.item_count(), 16);
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_none()
    );
    assert_eq!(backend.queued_units(), 8);
}

#[tokio::test(start_paused = true)]
async fn an_open_item_goes_after_flush_timeout() {
    let backend = backend(coalesce(Duration::from_millis(50), 1000, 0), None);
    let start = tokio::time::Instant::now();
    assert!(!backend.push_admitted(part(1, 3)).unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(backend.push_admitted(part(2, 3)).unwrap());
    assert!(
        pop_within(&backend, Duration::from_millis(19))
            .await
            .is_none()
    );
    let item = backend.pop().await.expect("flushed by time");
    assert_eq!(item.payload.item_count(), 12);
    // Timed from when the item opened, not from the last part.
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    // A part after the deadline opens a new item instead of joining.
    assert!(!backend.push_admitted(part(3, 3)).unwrap());
    assert!(
        pop_within(&backend, Duration::from_millis(49))
            .await
            .is_none()
    );
    assert_eq!(
        backend.pop().await.expect("flushed").payload.item_count(),
        6
    );
}

#[tokio::test(start_paused = true)]
async fn flush_sends_the_open_item_and_opens_no_more() {
    let backend = backend(coalesce(HOUR, 1000, 0), None);
    assert!(!backend.push_admitted(part(1, 3)).unwrap());
    assert!(backend.push_admitted(part(2, 3)).unwrap());
    backend.flush();
    let item = pop_within(&backend, Duration::from_millis(1))
        .await
        .expect("flushed at once");
    assert_eq!(item.payload.item_count(), 12);
    // After a flush (shutdown) nothing waits.
    assert!(!backend.push_admitted(part(3, 3)).unwrap());
    assert!(!backend.push_admitted(part(4, 3)).unwrap());
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_some()
    );
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn a_rerouted_push_closes_the_open_item_and_removal_drains_it() {
    let backend = backend(coalesce(HOUR, 1000, 0), None);
    assert!(!backend.push_admitted(part(1, 3)).unwrap());
    // Re-routed data is queued behind the open item, which then goes as it is.
    backend.push(part(2, 3)).unwrap();
    assert_eq!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .expect("closed by the push")
            .payload
            .item_count(),
        6
    );
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_some()
    );
    // Removal: the open item is drained with the queue (to be re-routed)
    // and the backend takes nothing more.
    assert!(!backend.push_admitted(part(3, 3)).unwrap());
    assert!(backend.push_admitted(part(4, 3)).unwrap());
    backend.remove();
    let drained = backend.drain();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].payload.item_count(), 12);
    assert_eq!(backend.queued_units(), 0);
    assert!(backend.push_admitted(part(5, 3)).is_err());
    assert!(
        pop_within(&backend, Duration::from_millis(1))
            .await
            .is_none()
    );
}

const LINGER: &str = r#"
resolver:
  static:
    hostnames: [a:4317, b:4317, c:4317]
protocol:
  otlp:
    timeout: 1s
    sending_queue:
      queue_size: 1000
      batch: {flush_timeout: 1h, min_size: 100000}
"#;

#[tokio::test(start_paused = true)]
async fn the_exporter_merges_parts_and_shutdown_flushes_them() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, ctx) = exporter("loadbalancing/s", LINGER, &fleet);
    exporter.start().await.unwrap();
    let all = ids(40, 300);
    for chunk in all.chunks(30) {
        send(&exporter, chunk, 2).await;
    }
    // Ten batches split three ways: one open item per backend, held back.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fleet.span_count(), 0);
    assert_eq!(exporter.balancer.held(), 3);
    assert_eq!(
        exporter.balancer.queued().values().sum::<u64>(),
        30,
        "each part counts in its backend's queue"
    );
    // Shutdown sends them well before its deadline.
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fleet.span_count(), 600);
    assert_eq!(fleet.received.lock().len(), 3, "one request per backend");
    assert_placed(
        &fleet,
        &all,
        &HashRing::new(&["a:4317", "b:4317", "c:4317"]),
    );
    assert_eq!(exporter.balancer.held(), 0);
    assert_eq!(
        ctx.host.metrics.sum(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "loadbalancing/s")]
        ),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_backends_open_item_goes_to_the_new_owners() {
    let fleet = Arc::new(Fleet::default());
    let yaml = LINGER.replace("queue_size: 1000", "queue_size: 100000\n      sizer: items");
    let (exporter, _ctx) = exporter("loadbalancing/m", &yaml, &fleet);
    exporter.start().await.unwrap();
    let all = ids(50, 200);
    for chunk in all.chunks(20) {
        send(&exporter, chunk, 1).await;
    }
    assert!(exporter.balancer.queued()["c:4317"] > 0);
    assert_eq!(exporter.balancer.queued().values().sum::<u64>(), 200);
    exporter
        .balancer
        .set_endpoints(endpoints(&["a:4317", "b:4317"]));
    // c's open item was routed over the new ring at once (queued behind the
    // open items of a and b, which then go as they are): nothing is lost.
    assert_eq!(exporter.balancer.queued().values().sum::<u64>(), 200);
    assert!(!exporter.balancer.queued().contains_key("c:4317"));
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(fleet.span_count(), 200);
    assert_eq!(fleet.attempts("c:4317"), 0);
    assert_placed(&fleet, &all, &HashRing::new(&["a:4317", "b:4317"]));
}

#[tokio::test(start_paused = true)]
async fn the_default_coalesces_and_keeps_latency_short() {
    let fleet = Arc::new(Fleet::default());
    let (exporter, _ctx) = exporter("loadbalancing/d", THREE, &fleet);
    exporter.start().await.unwrap();
    let all = ids(60, 300);
    let start = tokio::time::Instant::now();
    for chunk in all.chunks(30) {
        send(&exporter, chunk, 2).await;
    }
    until("all delivered", || fleet.span_count() == 600).await;
    assert!(start.elapsed() <= DEFAULT_COALESCE_TIMEOUT + Duration::from_millis(10));
    // Ten batches, each split three ways: far fewer than 30 requests.
    let requests = fleet.received.lock().len();
    assert!(requests <= 6, "{requests} requests");
    exporter
        .shutdown(std::time::Instant::now() + Duration::from_secs(1))
        .await
        .unwrap();
}

#[test]
fn batch_keys_are_otelcols_and_checked() {
    let config: LoadBalancingConfig = serde_yaml_ng::from_str(LINGER).unwrap();
    config.validate().unwrap();
    let batch = config.protocol.otlp.sending_queue.batch.clone().unwrap();
    assert_eq!(batch.flush_timeout, HOUR);
    assert_eq!(batch.min_size, 100_000);
    assert_eq!(batch.sizer, crate::helper::Sizer::Items);
    let bad: LoadBalancingConfig = serde_yaml_ng::from_str(
        "resolver: {static: {hostnames: [a]}}\nprotocol: {otlp: {sending_queue: {batch: {min_size: 10, max_size: 5}}}}",
    )
    .unwrap();
    let err = bad.validate().unwrap_err();
    assert_eq!(err.path, "protocol.otlp.sending_queue.batch.max_size");
    // The plain otlp exporter refuses it.
    let otlp: crate::otlp::OtlpConfig =
        serde_yaml_ng::from_str("endpoint: gw:4317\nsending_queue: {batch: {}}").unwrap();
    let err = otlp.validate(true).unwrap_err();
    assert_eq!(err.path, "sending_queue.batch");
}
