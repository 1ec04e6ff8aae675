//! Limits: `num_traces`, `max_memory_mib`, `maximum_trace_size_bytes`.
//! Each decides traces early; none loses a trace undecided.

use std::collections::BTreeMap;

use super::*;

#[test]
fn full_buffer_decides_the_oldest_early() {
    let mut smp =
        sampler("decision_wait: 10s\nnum_traces: 3\npolicies: [{name: all, type: always_sample}]");
    let ids: Vec<TraceId> = (1..=5u8).map(|n| TraceId([n; 16])).collect();
    let mut early = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let out = smp.ingest(vec![resource(None, vec![child(*id, 2)])], secs(n as u64));
        early.extend(out.decided);
        assert!(smp.pending_traces() <= 3);
    }
    assert_eq!(
        early
            .iter()
            .map(|d| (d.trace_id, d.trigger, d.sampled))
            .collect::<Vec<_>>(),
        vec![
            (ids[0], DecisionTrigger::TraceLimit, true),
            (ids[1], DecisionTrigger::TraceLimit, true),
        ]
    );
    assert_eq!(early[0].span_count, 1);
    // a span of an already buffered trace does not evict anything
    let out = smp.ingest(vec![resource(None, vec![child(ids[2], 3)])], secs(6));
    assert!(out.decided.is_empty());
    // the early decision is cached: a late span follows it
    let out = smp.ingest(vec![resource(None, vec![child(ids[0], 3)])], secs(6));
    assert_eq!(out.late_sampled_spans, 1);
    let rest = smp.tick(secs(100));
    assert_eq!(
        rest.iter().map(|d| d.trace_id).collect::<Vec<_>>(),
        vec![ids[2], ids[3], ids[4]]
    );
    assert_eq!(rest[0].span_count, 2);
    let st = smp.stats();
    assert_eq!(st.triggers.trace_limit, 2);
    assert_eq!(st.traces_decided_early, 2);
    assert_eq!(st.global.sampled, 5);
}

#[test]
fn memory_limit_decides_oldest_and_every_trace_is_decided() {
    let mut smp = sampler(
        "decision_wait: 30s\nmax_memory_mib: 1\npolicies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]",
    );
    const LIMIT: u64 = 1024 * 1024;
    let mut rng = Rng(7);
    let payload = "x".repeat(150);
    let mut sent: BTreeMap<TraceId, u64> = BTreeMap::new();
    let mut decided: BTreeMap<TraceId, (u64, bool)> = BTreeMap::new();
    let record = |list: Vec<DecidedTrace>, decided: &mut BTreeMap<TraceId, (u64, bool)>| {
        for d in list {
            assert!(
                decided
                    .insert(d.trace_id, (d.span_count, d.sampled))
                    .is_none(),
                "decided twice"
            );
        }
    };
    for request in 0..2_000u64 {
        let mut spans = Vec::new();
        for _ in 0..10 {
            let id = rng.trace_id();
            let error = rng.below(10) == 0;
            for n in 1..=5u8 {
                let code = if error && n == 3 { 2 } else { 0 };
                spans.push(span(
                    id,
                    n,
                    (n > 1).then_some(1),
                    code,
                    vec![s("payload", &payload)],
                ));
            }
            sent.insert(id, 5);
        }
        let out = smp.ingest(
            vec![resource(Some("svc"), spans)],
            Timestamp::from_millis(request * 5),
        );
        assert!(
            smp.buffered_bytes() <= LIMIT,
            "{} bytes buffered",
            smp.buffered_bytes()
        );
        assert_eq!(smp.stats().bytes_on_memory, smp.buffered_bytes());
        record(out.decided, &mut decided);
    }
    assert!(
        smp.stats().triggers.memory_limit > 15_000,
        "{:?}",
        smp.stats().triggers
    );
    record(smp.tick(secs(1_000)), &mut decided);
    assert_eq!(smp.pending_traces(), 0);
    assert_eq!(decided.len(), sent.len());
    for (id, (count, _)) in &decided {
        assert_eq!(sent.get(id), Some(count), "trace decided whole");
    }
    // early decisions still evaluate policies: errors are kept
    let kept = decided.values().filter(|(_, s_)| *s_).count();
    assert!(kept > 1_000 && kept < 3_000, "{kept}");
}

#[test]
fn huge_trace_is_decided_at_the_size_cap() {
    let mut smp = sampler(
        "decision_wait: 10s\nmaximum_trace_size_bytes: 10000\npolicies: [{name: all, type: always_sample}]",
    );
    let (huge, small) = (TraceId([9; 16]), TraceId([1; 16]));
    let payload = "y".repeat(400);
    smp.ingest(vec![resource(None, vec![child(small, 2)])], secs(0));
    let mut at_cap = None;
    let mut forwarded = 0;
    for n in 1..=60u8 {
        let out = smp.ingest(
            vec![resource(
                Some("big"),
                vec![span(huge, n, Some(1), 0, vec![s("p", &payload)])],
            )],
            secs(1),
        );
        if let Some(d) = out.decided.first() {
            assert!(at_cap.is_none(), "decided twice");
            assert_eq!(d.trigger, DecisionTrigger::TraceSizeLimit);
            assert!(d.sampled);
            at_cap = Some((n, d.span_count));
        }
        forwarded += out.late_sampled_spans;
    }
    let (n, count) = at_cap.unwrap();
    // ~440 bytes a span: the cap is crossed at the 23rd span
    assert!((20..=26).contains(&n), "{n}");
    assert_eq!(count, u64::from(n));
    assert_eq!(forwarded, 60 - u64::from(n));
    assert_eq!(smp.pending_traces(), 1);
    let rest = smp.tick(secs(10));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].trace_id, small);
    assert_eq!(smp.stats().triggers.trace_size_limit, 1);
}
