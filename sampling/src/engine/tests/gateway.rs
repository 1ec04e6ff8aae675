//! The original gateway policy set (original-values.yaml) on a generated
//! population: the exact set of kept traces, computed independently.

use std::collections::BTreeSet;

use super::*;
use crate::config::tests::original_gateway_section;
use crate::policy::testutil::i;

/// FNV-1a 64 written independently of the engine's.
fn expected_hash(salt: &[u8], id: &TraceId) -> u64 {
    salt.iter()
        .chain(id.0.iter())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &byte| {
            (h ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        })
}

/// floor((2^64 - 1) * 0.05), with 0.05 taken exactly as the float64 otelcol
/// computes (5 / 100): 0.05 * 2^57 is an integer, scaling by 2 is exact.
fn expected_threshold_5_percent() -> u64 {
    let ratio: f64 = 5.0 / 100.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scaled = (ratio * (1u64 << 57) as f64) as u128;
    assert_eq!(scaled as f64, ratio * (1u64 << 57) as f64);
    u64::try_from((u128::from(u64::MAX) * scaled) >> 57).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// ollyscale service, a span with status ERROR: kept (errors).
    OllyscaleError,
    /// ollyscale service, string http.status_code 4xx/5xx: kept (http-errors).
    HttpStringError,
    /// ollyscale service, string http.status_code 200: 5%.
    HttpStringOk,
    /// ollyscale service, int http.status_code 500: never matches the regex: 5%.
    HttpIntError,
    /// demo-*, otel-demo-*, ai-agent*: kept (keep-demos).
    Demo,
    /// other services: kept (keep-non-ollyscale).
    NonOllyscale,
    /// no service.name at all: kept (invert_match with the key absent).
    NoService,
    /// ollyscale-* with OK/UNSET spans: 5%.
    OllyscaleSuccess,
    /// my-ollyscale-proxy: the unanchored regex matches: 5%.
    OllyscaleInName,
    /// spans from an ollyscale service and another service: 5%.
    Mixed,
}

const KINDS: [Kind; 10] = [
    Kind::OllyscaleError,
    Kind::HttpStringError,
    Kind::HttpStringOk,
    Kind::HttpIntError,
    Kind::Demo,
    Kind::NonOllyscale,
    Kind::NoService,
    Kind::OllyscaleSuccess,
    Kind::OllyscaleInName,
    Kind::Mixed,
];

fn always_kept(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::OllyscaleError
            | Kind::HttpStringError
            | Kind::Demo
            | Kind::NonOllyscale
            | Kind::NoService
    )
}

/// The trace's spans, each with its service (None: no service.name).
fn generate(rng: &mut Rng, kind: Kind, id: TraceId) -> Vec<(Option<&'static str>, Span)> {
    const OLLY: [&str; 3] = ["ollyscale-api", "ollyscale-ingest", "ollyscale-web"];
    let olly = OLLY[usize::try_from(rng.below(3)).unwrap()];
    let n_spans = 3 + u8::try_from(rng.below(3)).unwrap();
    let ok_or_unset = |rng: &mut Rng| if rng.below(2) == 0 { 0 } else { 1 };
    let mut out = Vec::new();
    for n in 1..=n_spans {
        let parent = (n > 1).then_some(1);
        let mut code = ok_or_unset(rng);
        let mut attrs = vec![];
        let mut service = Some(olly);
        match kind {
            Kind::OllyscaleError => {
                if n == n_spans {
                    code = 2;
                }
            }
            Kind::HttpStringError => {
                if n == 1 {
                    let v = ["404", "429", "500", "503"][usize::try_from(rng.below(4)).unwrap()];
                    attrs.push(s("http.status_code", v));
                }
            }
            Kind::HttpStringOk => attrs.push(s("http.status_code", "200")),
            Kind::HttpIntError => attrs.push(i("http.status_code", 500)),
            Kind::Demo => {
                service = Some(
                    ["demo-frontend", "otel-demo-cart", "ai-agent-planner"]
                        [usize::try_from(rng.below(3)).unwrap()],
                );
            }
            Kind::NonOllyscale => {
                service = Some(
                    ["checkout", "payment", "olly-scale"][usize::try_from(rng.below(3)).unwrap()],
                );
            }
            Kind::NoService => service = None,
            Kind::OllyscaleSuccess => {}
            Kind::OllyscaleInName => service = Some("my-ollyscale-proxy"),
            Kind::Mixed => {
                if n % 2 == 0 {
                    service = Some("checkout");
                }
            }
        }
        out.push((service, span(id, n, parent, code, attrs)));
    }
    out
}

#[test]
fn original_gateway_policies_keep_exactly_the_expected_traces() {
    let cfg = SamplerConfig::from_deserializer(original_gateway_section()).unwrap();
    let mut smp = Sampler::new(cfg).unwrap();
    let threshold = expected_threshold_5_percent();
    assert_eq!(threshold, crate::policy::probabilistic_threshold(5.0));

    let mut rng = Rng(2024);
    let mut expected = BTreeSet::new();
    let mut all = BTreeSet::new();
    let mut spans: Vec<(Option<&'static str>, Span)> = Vec::new();
    let mut by_rule = 0;
    let mut per_kind = [0usize; 10];
    for n in 0..6_000usize {
        let kind = KINDS[n % KINDS.len()];
        let id = rng.trace_id();
        all.insert(id);
        let by_hash = expected_hash(b"default-hash-seed", &id) <= threshold;
        if always_kept(kind) || by_hash {
            expected.insert(id);
            if !always_kept(kind) {
                by_rule += 1;
            }
        }
        per_kind[n % KINDS.len()] += 1;
        spans.extend(generate(&mut rng, kind, id));
    }
    // 3,600 traces go through the 5% rule: about 180 are kept by it.
    assert!((100..300).contains(&by_rule), "{by_rule}");
    assert_eq!(per_kind, [600; 10]);

    // All spans, shuffled, in requests of 100 spans within decision_wait.
    rng.shuffle(&mut spans);
    for (k, chunk) in spans.chunks(100).enumerate() {
        let mut batch: Vec<ResourceSpans> = Vec::new();
        for (service, sp) in chunk {
            match batch.iter_mut().find(|r| {
                r.resource
                    .as_ref()
                    .unwrap()
                    .attributes
                    .first()
                    .map(|kv| kv.value.clone())
                    == service.map(|v| s("service.name", v).value)
            }) {
                Some(r) => r.scope_spans[0].spans.push(sp.clone()),
                None => batch.push(resource(*service, vec![sp.clone()])),
            }
        }
        let out = smp.ingest(batch, Timestamp::from_millis(k as u64));
        assert!(out.decided.is_empty() && out.forward.is_empty());
    }
    let decided = smp.tick(secs(11));
    assert_eq!(decided.len(), all.len());
    let kept: BTreeSet<TraceId> = decided
        .iter()
        .filter(|d| d.sampled)
        .map(|d| d.trace_id)
        .collect();
    let missing: Vec<_> = expected.difference(&kept).collect();
    let extra: Vec<_> = kept.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );

    // Sampled traces come back whole.
    for d in decided.iter().filter(|d| d.sampled) {
        let n: usize = d
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s_| s_.spans.len())
            .sum();
        assert_eq!(n as u64, d.span_count);
    }
    // Per-policy counters: "errors" sampled exactly the error traces.
    let st = smp.stats();
    assert_eq!(&*st.policies[0].name, "errors");
    assert_eq!(st.policies[0].sampled, 600);
    assert_eq!(st.global.sampled, expected.len() as u64);
    assert_eq!(st.global.not_sampled, (all.len() - expected.len()) as u64);
}
