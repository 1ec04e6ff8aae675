//! `drop`: when every sub-policy samples (inverted results collapsed), the
//! trace is dropped whatever the other policies decide. Only allowed at the
//! top level.

use super::{BoxedPolicy, Evaluate, Level, TraceView, build_list, issue};
use crate::config::{ConfigIssue, DropConfig};
use crate::decision::Decision;

/// Drops traces all sub-policies match.
#[derive(Debug)]
pub(crate) struct Drop {
    subs: Vec<BoxedPolicy>,
}

impl Drop {
    pub(crate) fn build(
        cfg: Option<&DropConfig>,
        path: &str,
        level: Level,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let subs = cfg.map_or(&[][..], |c| &c.drop_sub_policy[..]);
        let list_path = format!("{path}.drop_sub_policy");
        if subs.is_empty() {
            return Err(vec![issue(list_path, "expected at least one sub-policy")]);
        }
        let subs = build_list(subs, &list_path, level)?;
        Ok(Drop {
            subs: subs.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

impl Evaluate for Drop {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        for sub in &mut self.subs {
            if sub.evaluate(trace).collapsed() == Decision::NotSampled {
                return Decision::NotSampled;
            }
        }
        Decision::Dropped
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn drops_when_all_match() {
        let mut p = policy(
            "{name: d, type: drop, drop: {drop_sub_policy: [
                {name: probe, type: string_attribute, string_attribute: {key: http.route, values: [/live, /ready]}},
                {name: no-error, type: not, not: {not_sub_policy: {name: err, type: status_code, status_code: {status_codes: [ERROR]}}}}
            ]}}",
        );
        let ok_probe = [rs(vec![], vec![span(vec![s("http.route", "/live")])])];
        let failed_probe = [rs(
            vec![],
            vec![with_status(span(vec![s("http.route", "/live")]), 2)],
        )];
        let api = [rs(vec![], vec![span(vec![s("http.route", "/api")])])];
        assert_eq!(eval(&mut p, &ok_probe), Dropped);
        assert_eq!(eval(&mut p, &failed_probe), NotSampled);
        assert_eq!(eval(&mut p, &api), NotSampled);
    }

    #[test]
    fn only_at_top_level() {
        assert_eq!(
            policy_errors(
                "{name: a, type: and, and: {and_sub_policy: [{name: d, type: drop, drop: {drop_sub_policy: [{name: x, type: always_sample}]}}]}}"
            ),
            vec![
                "policies[0].and.and_sub_policy[0].type: a drop policy is only allowed at the top level of policies"
            ]
        );
    }
}
