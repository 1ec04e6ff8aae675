//! `composite`: sub-policies sharing a spans-per-second budget.
//!
//! As in otelcol: sub-policies are evaluated in `composite_sub_policy` order
//! (`policy_order` is checked but does not change the order). The first one
//! that samples (inverted-sampled counts) decides: the trace is sampled if
//! that sub-policy's spans this second, plus the trace's spans, stay within
//! both its allocation and `max_total_spans_per_second`; otherwise it is not
//! sampled. Allocations are `percent`% of the total (a percent <= 0 gives an
//! equal share, total / number of sub-policies); a sub-policy without an
//! allocation gets none. Counters restart every whole second.

use super::{BoxedPolicy, Evaluate, Level, TraceView, build_list, issue};
use crate::config::{CompositeConfig, ConfigIssue};
use crate::decision::Decision;

#[derive(Debug)]
struct Sub {
    policy: BoxedPolicy,
    allocated_sps: i64,
    sampled_this_second: i64,
}

/// Budgeted first-match over sub-policies.
#[derive(Debug)]
pub(crate) struct Composite {
    subs: Vec<Sub>,
    max_total_sps: i64,
    current_second: u64,
}

impl Composite {
    pub(crate) fn build(
        cfg: Option<&CompositeConfig>,
        path: &str,
        level: Level,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let default_cfg = CompositeConfig::default();
        let cfg = cfg.unwrap_or(&default_cfg);
        let mut issues = Vec::new();
        let list_path = format!("{path}.composite_sub_policy");
        if cfg.composite_sub_policy.is_empty() {
            issues.push(issue(&list_path, "expected at least one sub-policy"));
        }
        if cfg.max_total_spans_per_second < 0 {
            issues.push(issue(
                format!("{path}.max_total_spans_per_second"),
                "must not be negative",
            ));
        }
        let names: Vec<&str> = cfg
            .composite_sub_policy
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        for (i, name) in cfg.policy_order.iter().enumerate() {
            if !names.contains(&name.as_str()) {
                issues.push(issue(
                    format!("{path}.policy_order[{i}]"),
                    format!("{name:?} is not the name of a composite_sub_policy"),
                ));
            }
        }
        for (i, alloc) in cfg.rate_allocation.iter().enumerate() {
            if !names.contains(&alloc.policy.as_str()) {
                issues.push(issue(
                    format!("{path}.rate_allocation[{i}].policy"),
                    format!(
                        "{:?} is not the name of a composite_sub_policy",
                        alloc.policy
                    ),
                ));
            }
        }
        let built = match build_list(&cfg.composite_sub_policy, &list_path, level) {
            Ok(b) => b,
            Err(mut e) => {
                issues.append(&mut e);
                Vec::new()
            }
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let allocation = |name: &str| -> i64 {
            let total = cfg.max_total_spans_per_second as f64;
            // The last entry for a name wins, as when otelcol fills its map.
            let mut sps = 0.0;
            for a in cfg.rate_allocation.iter().filter(|a| a.policy == name) {
                sps = if a.percent > 0 {
                    a.percent as f64 / 100.0 * total
                } else {
                    total / cfg.composite_sub_policy.len() as f64
                };
            }
            sps as i64
        };
        let subs = built
            .into_iter()
            .map(|(name, policy)| Sub {
                allocated_sps: allocation(&name),
                policy,
                sampled_this_second: 0,
            })
            .collect();
        Ok(Composite {
            subs,
            max_total_sps: cfg.max_total_spans_per_second,
            current_second: 0,
        })
    }
}

impl Evaluate for Composite {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let second = trace.now.as_secs();
        if second != self.current_second {
            self.current_second = second;
            for sub in &mut self.subs {
                sub.sampled_this_second = 0;
            }
        }
        let spans = i64::try_from(trace.span_count).unwrap_or(i64::MAX);
        for sub in &mut self.subs {
            if sub.policy.evaluate(trace).collapsed() != Decision::Sampled {
                continue;
            }
            let if_sampled = sub.sampled_this_second.saturating_add(spans);
            if if_sampled <= sub.allocated_sps && if_sampled <= self.max_total_sps {
                sub.sampled_this_second = if_sampled;
                return Decision::Sampled;
            }
            return Decision::NotSampled;
        }
        Decision::NotSampled
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    use super::super::TraceView;
    use super::super::testutil::*;
    use crate::clock::Timestamp;
    use crate::decision::Decision::*;

    const COMPOSITE: &str = "{name: c, type: composite, composite: {
        max_total_spans_per_second: 10,
        policy_order: [errors, web, rest],
        composite_sub_policy: [
            {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
            {name: web, type: and, and: {and_sub_policy: [
                {name: svc, type: string_attribute, string_attribute: {key: service.name, values: [web]}},
                {name: not-bot, type: boolean_attribute, boolean_attribute: {key: bot, value: true, invert_match: true}}
            ]}},
            {name: rest, type: always_sample}
        ],
        rate_allocation: [{policy: errors, percent: 50}, {policy: web, percent: 30}, {policy: rest, percent: 0}]
    }}";

    #[test]
    fn budgets_per_sub_policy_and_second() {
        let mut p = policy(COMPOSITE);
        // allocations: errors 5, web 3, rest 10/3 = 3 (truncated)
        let err2 = [rs(vec![], vec![with_status(span(vec![]), 2), span(vec![])])];
        let web2 = [rs(
            vec![s("service.name", "web")],
            vec![span(vec![]), span(vec![])],
        )];
        let bot = [rs(
            vec![s("service.name", "web")],
            vec![span(vec![b("bot", true)])],
        )];
        fn at(t: &[ResourceSpans], ms: u64) -> TraceView<'_> {
            view_at(t, Timestamp::from_millis(ms))
        }
        let (err2, web2, bot) = (&err2[..], &web2[..], &bot[..]);
        assert_eq!(p.evaluate(&at(err2, 1000)), Sampled); // errors 2/5
        assert_eq!(p.evaluate(&at(err2, 1100)), Sampled); // errors 4/5
        assert_eq!(p.evaluate(&at(err2, 1200)), NotSampled); // 6 > 5: first match decides
        assert_eq!(p.evaluate(&at(web2, 1300)), Sampled); // web 2/3
        assert_eq!(p.evaluate(&at(web2, 1400)), NotSampled); // 4 > 3
        // a bot on web: the and fails, "rest" (always) takes it: 1/3
        assert_eq!(p.evaluate(&at(bot, 1500)), Sampled);
        // a new second resets the counters
        assert_eq!(p.evaluate(&at(err2, 2000)), Sampled);
        assert_eq!(p.evaluate(&at(err2, 2001)), Sampled);
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors(
                "{name: c, type: composite, composite: {max_total_spans_per_second: 5, policy_order: [a, zz],
                  composite_sub_policy: [{name: a, type: always_sample}], rate_allocation: [{policy: yy, percent: 5}]}}"
            ),
            vec![
                "policies[0].composite.policy_order[1]: \"zz\" is not the name of a composite_sub_policy",
                "policies[0].composite.rate_allocation[0].policy: \"yy\" is not the name of a composite_sub_policy",
            ]
        );
        assert_eq!(
            policy_errors("{name: c, type: composite}"),
            vec!["policies[0].composite.composite_sub_policy: expected at least one sub-policy"]
        );
    }
}
