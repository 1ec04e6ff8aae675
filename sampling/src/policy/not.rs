//! `not`: the opposite of one sub-policy. Sampled becomes not sampled and
//! the reverse; other results (the inverted ones) pass through unchanged, as
//! in otelcol.

use super::{BoxedPolicy, Evaluate, Level, TraceView, build, issue};
use crate::config::{ConfigIssue, NotConfig};
use crate::decision::Decision;

/// Inverts its sub-policy.
#[derive(Debug)]
pub(crate) struct Not {
    sub: BoxedPolicy,
}

impl Not {
    pub(crate) fn build(
        cfg: Option<&NotConfig>,
        path: &str,
        level: Level,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let sub_path = format!("{path}.not_sub_policy");
        let Some(sub) = cfg.and_then(|c| c.not_sub_policy.as_deref()) else {
            return Err(vec![issue(sub_path, "expected one sub-policy")]);
        };
        Ok(Not {
            sub: build(sub, &sub_path, level)?,
        })
    }
}

impl Evaluate for Not {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        match self.sub.evaluate(trace) {
            Decision::Sampled => Decision::NotSampled,
            Decision::NotSampled => Decision::Sampled,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn inverts() {
        let mut p = policy(
            "{name: n, type: not, not: {not_sub_policy: {name: health, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}}}",
        );
        assert_eq!(
            eval(
                &mut p,
                &[rs(vec![], vec![span(vec![s("http.route", "/health")])])]
            ),
            NotSampled
        );
        assert_eq!(
            eval(
                &mut p,
                &[rs(vec![], vec![span(vec![s("http.route", "/api")])])]
            ),
            Sampled
        );
        let mut inv = policy(
            "{name: n, type: not, not: {not_sub_policy: {name: x, type: boolean_attribute, boolean_attribute: {key: k, value: true, invert_match: true}}}}",
        );
        // inverted results pass through a not unchanged
        assert_eq!(
            eval(&mut inv, &[rs(vec![], vec![span(vec![])])]),
            InvertedSampled
        );
        assert_eq!(
            eval(&mut inv, &[rs(vec![], vec![span(vec![b("k", true)])])]),
            InvertedNotSampled
        );
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors("{name: n, type: not, not: {}}"),
            vec!["policies[0].not.not_sub_policy: expected one sub-policy"]
        );
    }
}
