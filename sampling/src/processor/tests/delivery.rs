//! Backpressure at admission, and delivery that never holds decisions back:
//! the real processor on tokio's paused clock (the processor's clock), with
//! a next stage that refuses retryably until the test opens it.

use super::*;
use crate::processor::split::shard_of;

/// Decisions counted in `sampling_decision_latency`'s bucket `le`
/// (milliseconds late), and in all.
fn decisions_within(f: &Fixture, le: &str) -> (f64, f64) {
    let text = f.host.metrics.render_prometheus();
    let name = "otelcol_processor_tail_sampling_sampling_decision_latency";
    let read = |prefix: String| {
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read(format!(
            "{name}_bucket{{processor=\"tail_sampling\",le=\"{le}\"}} "
        )),
        read(format!("{name}_count{{processor=\"tail_sampling\"}} ")),
    )
}

fn refused(f: &Fixture) -> f64 {
    f.host
        .metrics
        .value(
            "otelcol_processor_refused_spans",
            &[("processor", "tail_sampling")],
        )
        .unwrap_or(0.0)
}

const ALL: &str = "decision_wait: 1s\npolicies: [{name: all, type: always_sample}]";

fn all_with_shards(shards: usize) -> String {
    format!("num_shards: {shards}\n{ALL}")
}

#[tokio::test(start_paused = true)]
async fn a_refusing_next_stage_does_not_delay_decisions() {
    let next = Recorder::new(false);
    let f = Fixture::start(&all_with_shards(2), next.clone()).await;
    // One trace every 100 ms for 5 s while the next stage refuses them all.
    for t in 0..50u64 {
        f.consume(request("svc", vec![span(t, "s", StatusCode::Ok)]))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        settle().await;
        // Now t x 100 + 50 ms: trace k was due at k x 100 + 1000 ms.
        let due = t.saturating_sub(9);
        assert_eq!(
            f.metric("global_count_traces_sampled", &[]),
            due as f64,
            "decided by {} ms",
            t * 100 + 50
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(next.attempts.load(Ordering::SeqCst) > 1);
    assert!(next.spans().is_empty());
    assert_eq!(f.processor.undelivered_spans(), 40);
    // Each was decided when it was due: 0 ms late.
    assert_eq!(decisions_within(&f, "0"), (40.0, 40.0));

    // The next stage recovers: everything arrives, once.
    next.open.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    let want: Vec<(u64, String)> = (0..50).map(|t| (t, "s".to_string())).collect();
    assert_eq!(next.spans(), want);
    assert_eq!(decisions_within(&f, "0"), (50.0, 50.0));
    assert_eq!(f.processor.undelivered_spans(), 0);
    assert_eq!(f.processor.held_spans(), 0);
    assert_eq!(f.dropped(), 0.0);
    assert_eq!(refused(&f), 0.0);
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_full_output_queue_refuses_new_spans_and_decisions_go_on() {
    let next = Recorder::new(false);
    // The output queue is full as soon as it holds anything.
    let limits = QueueLimits {
        output_bytes: 1,
        ..QueueLimits::default()
    };
    let f = Fixture::start_with(&all_with_shards(1), next.clone(), limits).await;
    f.consume(request(
        "svc",
        vec![span(1, "a", StatusCode::Ok), span(1, "b", StatusCode::Ok)],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.consume(request("svc", vec![span(2, "c", StatusCode::Ok)]))
        .await;
    // Trace 1 is decided at 1 s and waits in the output queue.
    tokio::time::sleep(Duration::from_millis(600)).await;
    settle().await;
    assert_eq!(f.processor.undelivered_spans(), 2);

    let error = f
        .processor
        .consume(request("svc", vec![span(3, "d", StatusCode::Ok)]))
        .await
        .expect_err("the output queue is full");
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    assert!(error.is_retryable());
    assert!(error.retry_after().is_some());
    assert_eq!(refused(&f), 1.0);

    // Trace 2, accepted before, is still decided on time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(f.metric("global_count_traces_sampled", &[]), 2.0);
    assert_eq!(f.processor.undelivered_spans(), 3);
    assert_eq!(decisions_within(&f, "0"), (2.0, 2.0));

    next.open.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(
        next.spans(),
        [(1, "a".to_string()), (1, "b".into()), (2, "c".into())]
    );
    assert_eq!(f.processor.undelivered_spans(), 0);
    // Room again: the sender's retry is accepted.
    f.consume(request("svc", vec![span(3, "d", StatusCode::Ok)]))
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    settle().await;
    assert_eq!(next.spans().len(), 4);
    assert_eq!(f.dropped(), 0.0);
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn full_shard_queues_refuse_with_resource_exhausted_and_lose_nothing() {
    let next = Recorder::new(false);
    let limits = QueueLimits {
        requests_per_shard: 2,
        ..QueueLimits::default()
    };
    let f = Fixture::start_with(&all_with_shards(1), next.clone(), limits).await;
    // The shard does not run in between: its queue takes two requests.
    f.consume(request("svc", vec![span(1, "a", StatusCode::Ok)]))
        .await;
    f.consume(request("svc", vec![span(2, "b", StatusCode::Ok)]))
        .await;
    let error = f
        .processor
        .consume(request("svc", vec![span(3, "c", StatusCode::Ok)]))
        .await
        .expect_err("the queue holds 2 requests");
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    assert!(error.retry_after().is_some());
    assert_eq!(f.processor.queued_spans(), 2);
    assert_eq!(refused(&f), 1.0);

    // Once the shard took them, the retry is accepted.
    settle().await;
    assert_eq!(f.processor.queued_spans(), 0);
    f.consume(request("svc", vec![span(3, "c", StatusCode::Ok)]))
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    next.open.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(
        next.spans(),
        [(1, "a".to_string()), (2, "b".into()), (3, "c".into())]
    );
    assert_eq!(f.dropped(), 0.0);
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_is_accepted_by_all_its_shards_or_by_none() {
    // Traces on shard 0 and on shard 1.
    let on = |shard: usize| (0u64..).filter(move |&t| shard_of(&trace_id(t), 2) == shard);
    let a: Vec<u64> = on(0).take(2).collect();
    let b = on(1).next().unwrap();
    let next = Recorder::new(true);
    let limits = QueueLimits {
        requests_per_shard: 1,
        ..QueueLimits::default()
    };
    let f = Fixture::start_with(&all_with_shards(2), next.clone(), limits).await;
    f.consume(request("svc", vec![span(a[0], "a0", StatusCode::Ok)]))
        .await;
    let error = f
        .processor
        .consume(request(
            "svc",
            vec![
                span(b, "b", StatusCode::Ok),
                span(a[1], "a1", StatusCode::Ok),
            ],
        ))
        .await
        .expect_err("shard 0 is full");
    assert_eq!(error.kind(), ErrorKind::ResourceExhausted);
    // Shard 1 did not keep its part.
    assert_eq!(f.processor.queued_spans(), 1);
    settle().await;
    assert_eq!(f.processor.held_spans(), 1, "only a0 is held");

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    settle().await;
    assert_eq!(next.spans(), [(a[0], "a0".to_string())]);
    f.shutdown_within(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn beyond_num_traces_the_oldest_traces_are_decided_early_and_counted() {
    let next = Recorder::new(true);
    let yaml = "decision_wait: 10s\nnum_traces: 4\nnum_shards: 1\npolicies: [{name: all, type: always_sample}]";
    let f = Fixture::start(yaml, next.clone()).await;
    for t in 0..6u64 {
        f.consume(request("svc", vec![span(t, "s", StatusCode::Ok)]))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle().await;
    // Traces 0 and 1 made room for 4 and 5: decided and delivered at once.
    assert_eq!(next.spans(), [(0, "s".to_string()), (1, "s".to_string())]);
    assert_eq!(
        f.metric("sampling_traces_decided_early", &[("reason", "num_traces")]),
        2.0
    );
    assert_eq!(f.metric("sampling_traces_on_memory", &[]), 4.0);
    // The others wait for their decision_wait; nothing is dropped undecided.
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(next.spans().len(), 6);
    assert_eq!(f.metric("sampling_trace_dropped_too_early", &[]), 0.0);
    assert_eq!(f.dropped(), 0.0);
    f.shutdown_within(Duration::from_secs(1)).await;
}
