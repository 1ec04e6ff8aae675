//! Engine behaviour: timing, late spans, limits, and the original gateway
//! policy set on a generated population.

mod gateway;
mod limits;

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::policy::testutil::{b, s};

/// A small deterministic PRNG (splitmix64), so populations are reproducible.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.below(i as u64 + 1)).unwrap();
            items.swap(i, j);
        }
    }

    pub(super) fn trace_id(&mut self) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.next().to_be_bytes());
        TraceId(id)
    }
}

pub(super) fn secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// A span of `trace`; `parent: None` makes it the root.
pub(super) fn span(
    trace: TraceId,
    n: u8,
    parent: Option<u8>,
    code: i32,
    attrs: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: trace.0.to_vec(),
        span_id: vec![n; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span-{n}"),
        start_time_unix_nano: 1_000_000_000 + u64::from(n) * 1_000_000,
        end_time_unix_nano: 1_050_000_000 + u64::from(n) * 1_000_000,
        attributes: attrs,
        status: Some(Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A child span (parent 1) with status UNSET and no attributes.
pub(super) fn child(trace: TraceId, n: u8) -> Span {
    span(trace, n, Some(1), 0, vec![])
}

pub(super) fn resource(service: Option<&str>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: service
                .map(|s_| vec![s("service.name", s_)])
                .unwrap_or_default(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn sampler(yaml: &str) -> Sampler {
    Sampler::from_yaml(yaml).unwrap()
}

fn span_ids(decided: &DecidedTrace) -> BTreeSet<Vec<u8>> {
    decided
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s_| &s_.spans)
        .map(|sp| sp.span_id.clone())
        .collect()
}

fn forwarded_spans(out: &IngestOutcome) -> usize {
    out.forward
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s_| s_.spans.len())
        .sum()
}

const ALWAYS: &str = "decision_wait: 10s\npolicies: [{name: all, type: always_sample}]";

#[test]
fn decides_after_decision_wait_from_first_span() {
    let mut smp = sampler(ALWAYS);
    let (a, bb) = (TraceId([1; 16]), TraceId([2; 16]));
    smp.ingest(vec![resource(Some("svc"), vec![child(a, 2)])], secs(100));
    smp.ingest(vec![resource(Some("svc"), vec![child(bb, 2)])], secs(103));
    smp.ingest(vec![resource(Some("svc"), vec![child(a, 3)])], secs(109));
    assert_eq!(smp.next_deadline(), Some(secs(110)));
    assert!(smp.tick(secs(109)).is_empty());
    let first = smp.tick(secs(110));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].trace_id, a);
    assert_eq!(first[0].span_count, 2);
    assert_eq!(first[0].trigger, DecisionTrigger::DecisionWait);
    assert_eq!(first[0].first_seen, secs(100));
    assert_eq!(smp.pending_traces(), 1);
    // time never goes backwards: an older "now" is the latest seen
    assert!(smp.tick(secs(50)).is_empty());
    let second = smp.tick(secs(120));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].trace_id, bb);
    assert_eq!(smp.stats().decision_lateness_ms.sum(), 7_000);
    assert_eq!(smp.stats().new_trace_id_received, 2);
    assert_eq!(smp.stats().global.sampled, 2);
    assert_eq!(smp.stats().triggers.decision_wait, 2);
    assert_eq!(smp.pending_traces(), 0);
    assert_eq!(smp.buffered_bytes(), 0);
    assert_eq!(smp.next_deadline(), None);
}

#[test]
fn split_trace_in_random_order_is_decided_once_and_whole() {
    let mut smp = sampler(ALWAYS);
    let mut rng = Rng(42);
    let traces: Vec<TraceId> = (0..50).map(|_| rng.trace_id()).collect();
    // 20 spans per trace, over two services, all shuffled together.
    let mut spans: Vec<(usize, Span)> = Vec::new();
    for &id in &traces {
        for n in 1..=20u8 {
            let parent = if n == 1 { None } else { Some(1) };
            spans.push((
                n as usize % 2,
                span(id, n, parent, 0, vec![s("n", &n.to_string())]),
            ));
        }
    }
    rng.shuffle(&mut spans);
    // Many small requests within decision_wait (10 s) of the first one.
    let mut at_ms = 0;
    while !spans.is_empty() {
        let take = usize::try_from(1 + rng.below(25)).unwrap().min(spans.len());
        let chunk: Vec<(usize, Span)> = spans.drain(..take).collect();
        let mut by_service: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
        for (svc, sp) in chunk {
            by_service[svc].push(sp);
        }
        let batch = vec![
            resource(Some("even"), std::mem::take(&mut by_service[0])),
            resource(Some("odd"), std::mem::take(&mut by_service[1])),
        ];
        let out = smp.ingest(batch, Timestamp::from_millis(at_ms));
        assert!(out.decided.is_empty() && out.forward.is_empty());
        at_ms += 50;
        assert!(at_ms < 9_000);
    }
    assert!(smp.tick(secs(9)).is_empty());
    let decided = smp.tick(secs(15));
    assert_eq!(decided.len(), 50);
    let ids: BTreeSet<TraceId> = decided.iter().map(|d| d.trace_id).collect();
    assert_eq!(ids, traces.iter().copied().collect());
    for d in &decided {
        assert_eq!(d.span_count, 20);
        let want: BTreeSet<Vec<u8>> = (1..=20u8).map(|n| vec![n; 8]).collect();
        assert_eq!(span_ids(d), want);
        // regrouped: one ResourceSpans per service, resource preserved
        assert_eq!(d.resource_spans.len(), 2);
        for r in &d.resource_spans {
            let svc = &r.resource.as_ref().unwrap().attributes[0];
            let odd = r.scope_spans[0]
                .spans
                .iter()
                .all(|sp| sp.span_id[0] % 2 == 1);
            let even = r.scope_spans[0]
                .spans
                .iter()
                .all(|sp| sp.span_id[0] % 2 == 0);
            assert!(
                (*svc == s("service.name", "odd") && odd)
                    || (*svc == s("service.name", "even") && even)
            );
        }
    }
    assert!(smp.tick(secs(100)).is_empty());
    assert_eq!(smp.stats().new_trace_id_received, 50);
}

#[test]
fn late_spans_follow_the_cached_decision() {
    let mut smp = sampler(
        "decision_wait: 5s\npolicies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]",
    );
    let (kept, dropped) = (TraceId([1; 16]), TraceId([2; 16]));
    smp.ingest(
        vec![resource(
            Some("svc"),
            vec![
                span(kept, 1, None, 2, vec![]),
                span(dropped, 1, None, 0, vec![]),
            ],
        )],
        secs(0),
    );
    let decided = smp.tick(secs(5));
    assert_eq!(
        decided
            .iter()
            .map(|d| (d.trace_id, d.sampled))
            .collect::<Vec<_>>(),
        vec![(kept, true), (dropped, false)]
    );
    // Late spans, 7 s after the decision; the late one of `dropped` is even an
    // error: the decision stands.
    let out = smp.ingest(
        vec![resource(
            Some("svc"),
            vec![
                child(kept, 2),
                span(dropped, 2, Some(1), 2, vec![]),
                child(kept, 3),
                child(dropped, 3),
            ],
        )],
        secs(12),
    );
    assert_eq!(forwarded_spans(&out), 2);
    assert_eq!(out.late_sampled_spans, 2);
    assert_eq!(out.late_not_sampled_spans, 2);
    assert_eq!(out.buffered_spans, 0);
    assert!(
        out.forward[0].scope_spans[0]
            .spans
            .iter()
            .all(|sp| sp.trace_id == kept.0.to_vec())
    );
    assert_eq!(
        out.forward[0].resource,
        Some(Resource {
            attributes: vec![s("service.name", "svc")],
            ..Default::default()
        })
    );
    assert_eq!(smp.pending_traces(), 0);
    let st = smp.stats();
    assert_eq!((st.late_spans.sampled, st.late_spans.not_sampled), (2, 2));
    assert_eq!(st.late_span_age_secs.count(), 4);
    assert_eq!(st.late_span_age_secs.sum(), 4 * 7);
    assert!(smp.tick(secs(100)).is_empty());
}

#[test]
fn without_caches_late_spans_start_a_new_trace() {
    let mut smp = sampler(
        "decision_wait: 5s\ndecision_cache: {sampled_cache_size: 0, non_sampled_cache_size: 0}\npolicies: [{name: all, type: always_sample}]",
    );
    let id = TraceId([3; 16]);
    smp.ingest(vec![resource(None, vec![child(id, 1)])], secs(0));
    assert_eq!(smp.tick(secs(5)).len(), 1);
    let out = smp.ingest(vec![resource(None, vec![child(id, 2)])], secs(6));
    assert_eq!(out.buffered_spans, 1);
    assert_eq!(smp.pending_traces(), 1);
    assert_eq!(smp.stats().new_trace_id_received, 2);
    let again = smp.tick(secs(11));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].span_count, 1);
}

#[test]
fn root_span_shortens_the_wait() {
    let mut smp = sampler(
        "decision_wait: 30s\ndecision_wait_after_root_received: 2s\npolicies: [{name: all, type: always_sample}]",
    );
    let (with_root, no_root) = (TraceId([1; 16]), TraceId([2; 16]));
    smp.ingest(
        vec![resource(None, vec![child(with_root, 2), child(no_root, 2)])],
        secs(0),
    );
    smp.ingest(
        vec![resource(None, vec![span(with_root, 1, None, 0, vec![])])],
        secs(1),
    );
    assert!(smp.tick(Timestamp::from_millis(2_999)).is_empty());
    let early = smp.tick(secs(3));
    assert_eq!(early.len(), 1);
    assert_eq!(early[0].trace_id, with_root);
    assert_eq!(early[0].span_count, 2);
    assert_eq!(early[0].trigger, DecisionTrigger::RootSpanReceived);
    assert!(smp.tick(secs(29)).is_empty());
    let late = smp.tick(secs(30));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].trace_id, no_root);
    assert_eq!(smp.stats().triggers.root_span_received, 1);
    assert_eq!(smp.stats().triggers.decision_wait, 1);
}

#[test]
fn root_wait_longer_than_decision_wait_changes_nothing() {
    let mut smp = sampler(
        "decision_wait: 5s\ndecision_wait_after_root_received: 10s\npolicies: [{name: all, type: always_sample}]",
    );
    let id = TraceId([1; 16]);
    smp.ingest(
        vec![resource(None, vec![span(id, 1, None, 0, vec![])])],
        secs(0),
    );
    let d = smp.tick(secs(5));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].trigger, DecisionTrigger::DecisionWait);
}

#[test]
fn decision_order_drop_veto_and_first_match() {
    let yaml = r#"
decision_wait: 1s
policies:
  - {name: keep, type: always_sample}
  - name: not-prod
    type: string_attribute
    string_attribute: {key: env, values: [prod], invert_match: true}
  - name: drop-health
    type: drop
    drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}]}
"#;
    let mut smp = sampler(yaml);
    let (plain, prod, health) = (TraceId([1; 16]), TraceId([2; 16]), TraceId([3; 16]));
    smp.ingest(
        vec![
            resource(None, vec![child(plain, 2)]),
            resource(
                None,
                vec![span(prod, 2, Some(1), 0, vec![s("env", "prod")])],
            ),
            resource(
                None,
                vec![span(
                    health,
                    2,
                    Some(1),
                    0,
                    vec![s("http.route", "/health")],
                )],
            ),
        ],
        secs(0),
    );
    let d = smp.tick(secs(1));
    let summary: Vec<(TraceId, FinalDecision, Vec<&str>)> = d
        .iter()
        .map(|d| {
            (
                d.trace_id,
                d.decision,
                d.policies.iter().map(|p| &**p).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (plain, FinalDecision::Sampled, vec!["keep"]),
            (prod, FinalDecision::NotSampled, vec!["not-prod"]),
            (health, FinalDecision::Dropped, vec!["drop-health"]),
        ]
    );
    let st = smp.stats();
    // drop policies run first and stop evaluation: "keep" never saw `health`
    assert_eq!(st.policies[0].sampled, 2);
    assert_eq!(st.policies[1].inverted_sampled, 1);
    assert_eq!(st.policies[1].inverted_not_sampled, 1);
    assert_eq!(st.policies[2].dropped, 1);
    assert_eq!(st.policies[2].not_sampled, 2);
    assert_eq!(
        st.global,
        crate::stats::DecisionCounts {
            sampled: 1,
            not_sampled: 1,
            dropped: 1
        }
    );

    let mut first = sampler(
        "sample_on_first_match: true\npolicies: [{name: a, type: always_sample}, {name: b, type: always_sample}]",
    );
    first.ingest(vec![resource(None, vec![child(plain, 2)])], secs(0));
    let d = first.tick(secs(30));
    assert_eq!(d[0].policies, vec![Arc::<str>::from("a")]);
    assert_eq!(first.stats().policies[1].sampled, 0);
}

#[test]
fn flush_all_decides_or_drops_pending() {
    let mut smp = sampler(ALWAYS);
    for n in 1..=3u8 {
        smp.ingest(
            vec![resource(None, vec![child(TraceId([n; 16]), 2)])],
            secs(u64::from(n)),
        );
    }
    let d = smp.flush_all(secs(4));
    assert_eq!(
        d.iter()
            .map(|d| (d.trace_id.0[0], d.trigger))
            .collect::<Vec<_>>(),
        vec![
            (1, DecisionTrigger::Shutdown),
            (2, DecisionTrigger::Shutdown),
            (3, DecisionTrigger::Shutdown)
        ]
    );
    assert!(smp.tick(secs(100)).is_empty());

    let mut dropper = sampler(
        "drop_pending_traces_on_shutdown: true\npolicies: [{name: all, type: always_sample}]",
    );
    dropper.ingest(
        vec![resource(None, vec![child(TraceId([1; 16]), 2)])],
        secs(0),
    );
    assert!(dropper.flush_all(secs(1)).is_empty());
    assert_eq!(dropper.stats().sampling_trace_dropped_too_early, 1);
    assert_eq!(dropper.pending_traces(), 0);
}

#[test]
fn record_policy_marks_scopes() {
    let mut smp = sampler(
        "decision_wait: 10s\npolicies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: all, type: always_sample}]",
    );
    smp.set_record_policy(true);
    let (err, ok) = (TraceId([1; 16]), TraceId([2; 16]));
    smp.ingest(
        vec![resource(
            None,
            vec![span(err, 1, None, 2, vec![]), child(ok, 2)],
        )],
        secs(0),
    );
    let d = smp.tick(secs(10));
    let policy_of = |d: &DecidedTrace| {
        d.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .unwrap()
            .attributes
            .clone()
    };
    assert_eq!(policy_of(&d[0]), vec![s(POLICY_ATTRIBUTE, "errors")]);
    assert_eq!(policy_of(&d[1]), vec![s(POLICY_ATTRIBUTE, "all")]);
    // Late spans of both traces in one scope: split by deciding policy.
    let out = smp.ingest(
        vec![resource(
            None,
            vec![child(err, 3), child(ok, 3), child(err, 4)],
        )],
        secs(11),
    );
    let scopes: Vec<(Vec<KeyValue>, usize)> = out.forward[0]
        .scope_spans
        .iter()
        .map(|ss| {
            (
                ss.scope.as_ref().unwrap().attributes.clone(),
                ss.spans.len(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        vec![
            (
                vec![
                    s(POLICY_ATTRIBUTE, "errors"),
                    b(CACHED_DECISION_ATTRIBUTE, true)
                ],
                2
            ),
            (
                vec![
                    s(POLICY_ATTRIBUTE, "all"),
                    b(CACHED_DECISION_ATTRIBUTE, true)
                ],
                1
            ),
        ]
    );
}

#[test]
fn sampler_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Sampler>();
    assert_send::<DecidedTrace>();
    assert_send::<IngestOutcome>();
}

#[test]
fn invalid_config_lists_every_problem() {
    let err = Sampler::from_yaml(
        "num_traces: 0\npolicies: [{name: a, type: nope}, {name: b, type: status_code}]",
    )
    .unwrap_err();
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "num_traces",
            "policies[0].type",
            "policies[1].status_code.status_codes"
        ]
    );
}
