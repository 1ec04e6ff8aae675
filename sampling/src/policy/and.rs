//! `and`: sampled only when every sub-policy samples. Inverted results
//! collapse: inverted-sampled counts as sampled, inverted-not-sampled as not
//! sampled. Evaluation stops at the first sub-policy that does not sample.

use super::{BoxedPolicy, Evaluate, Level, TraceView, build_list, issue};
use crate::config::{AndConfig, ConfigIssue};
use crate::decision::Decision;

/// All sub-policies must sample.
#[derive(Debug)]
pub(crate) struct And {
    subs: Vec<BoxedPolicy>,
}

impl And {
    pub(crate) fn build(
        cfg: Option<&AndConfig>,
        path: &str,
        level: Level,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let subs = cfg.map_or(&[][..], |c| &c.and_sub_policy[..]);
        let list_path = format!("{path}.and_sub_policy");
        if subs.is_empty() {
            return Err(vec![issue(list_path, "expected at least one sub-policy")]);
        }
        let subs = build_list(subs, &list_path, level)?;
        Ok(And {
            subs: subs.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

impl Evaluate for And {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        for sub in &mut self.subs {
            if sub.evaluate(trace).collapsed() == Decision::NotSampled {
                return Decision::NotSampled;
            }
        }
        Decision::Sampled
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn all_must_sample_and_inversion_collapses() {
        let mut p = policy(
            "{name: a, type: and, and: {and_sub_policy: [
                {name: svc, type: string_attribute, string_attribute: {key: service.name, values: [api]}},
                {name: not-debug, type: boolean_attribute, boolean_attribute: {key: debug, value: true, invert_match: true}}
            ]}}",
        );
        let cases = [
            (vec![s("service.name", "api")], vec![], Sampled), // second is inverted-sampled -> sampled
            (
                vec![s("service.name", "api")],
                vec![b("debug", true)],
                NotSampled,
            ), // inverted-not-sampled
            (vec![s("service.name", "web")], vec![], NotSampled),
        ];
        for (res, attrs, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(res.clone(), vec![span(attrs.clone())])]),
                want,
                "{res:?} {attrs:?}"
            );
        }
        // A lone inverted sub-policy: the gateway's keep-non-ollyscale.
        let mut lone = policy(
            "{name: a, type: and, and: {and_sub_policy: [
                {name: n, type: string_attribute, string_attribute: {key: service.name, values: [ollyscale-.*], enabled_regex_matching: true, invert_match: true}}
            ]}}",
        );
        assert_eq!(
            eval(
                &mut lone,
                &[rs(vec![s("service.name", "shop")], vec![span(vec![])])]
            ),
            Sampled
        );
        assert_eq!(eval(&mut lone, &[rs(vec![], vec![span(vec![])])]), Sampled);
        assert_eq!(
            eval(
                &mut lone,
                &[rs(
                    vec![s("service.name", "ollyscale-ui")],
                    vec![span(vec![])]
                )]
            ),
            NotSampled
        );
    }

    #[test]
    fn nested_and_not_composite() {
        // and(prod, not(and(health route, no error)), composite(always))
        let mut p = policy(
            "{name: a, type: and, and: {and_sub_policy: [
                {name: prod, type: string_attribute, string_attribute: {key: env, values: [prod]}},
                {name: not-quiet-probe, type: not, not: {not_sub_policy:
                    {name: quiet-probe, type: and, and: {and_sub_policy: [
                        {name: probe, type: string_attribute, string_attribute: {key: http.route, values: [/health]}},
                        {name: ok, type: status_code, status_code: {status_codes: [OK, UNSET]}}
                    ]}}}},
                {name: budget, type: composite, composite: {max_total_spans_per_second: 100,
                    composite_sub_policy: [{name: any, type: always_sample}],
                    rate_allocation: [{policy: any, percent: 100}]}}
            ]}}",
        );
        let trace = |env: &str, route: &str, code: i32| {
            [rs(
                vec![s("env", env)],
                vec![with_status(span(vec![s("http.route", route)]), code)],
            )]
        };
        let cases = [
            (trace("prod", "/api", 0), Sampled),
            (trace("prod", "/health", 0), NotSampled), // a quiet probe
            (trace("prod", "/health", 2), Sampled),    // a failing probe is not quiet
            (trace("dev", "/api", 0), NotSampled),
        ];
        for (t, want) in &cases {
            assert_eq!(eval(&mut p, t), *want);
        }
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors("{name: a, type: and}"),
            vec!["policies[0].and.and_sub_policy: expected at least one sub-policy"]
        );
        assert_eq!(
            policy_errors("{name: a, type: and, and: {and_sub_policy: [{name: x, type: bogus}]}}"),
            vec![
                "policies[0].and.and_sub_policy[0].type: unknown policy type \"bogus\"; expected one of always_sample, latency, numeric_attribute, probabilistic, status_code, string_attribute, trace_state, trace_flags, rate_limiting, bytes_limiting, span_count, boolean_attribute, and, not, drop, composite"
            ]
        );
    }
}
