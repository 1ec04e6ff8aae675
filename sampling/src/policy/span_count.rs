//! `span_count`: the trace's number of spans within `[min_spans, max_spans]`
//! (inclusive; `max_spans: 0` means no upper bound).

use super::{Evaluate, TraceView, issue};
use crate::config::{ConfigIssue, SpanCountConfig};
use crate::decision::Decision;

/// Samples traces by their number of spans.
#[derive(Debug)]
pub(crate) struct SpanCount {
    min: u64,
    max: Option<u64>,
}

impl SpanCount {
    pub(crate) fn build(cfg: &SpanCountConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if cfg.min_spans < 0 {
            issues.push(issue(format!("{path}.min_spans"), "must not be negative"));
        }
        if cfg.max_spans < 0 {
            issues.push(issue(
                format!("{path}.max_spans"),
                "must not be negative (0 means no upper bound)",
            ));
        } else if cfg.max_spans != 0 && cfg.max_spans < cfg.min_spans {
            issues.push(issue(
                format!("{path}.max_spans"),
                format!(
                    "must not be less than min_spans ({}), or 0 for no upper bound",
                    cfg.min_spans
                ),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(SpanCount {
            min: u64::from(cfg.min_spans.unsigned_abs()),
            max: (cfg.max_spans != 0).then(|| u64::from(cfg.max_spans.unsigned_abs())),
        })
    }
}

impl Evaluate for SpanCount {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let n = trace.span_count;
        if n >= self.min && self.max.is_none_or(|max| n <= max) {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::{self, *};

    fn trace(n: usize) -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
        vec![rs(vec![], (0..n).map(|_| span(vec![])).collect())]
    }

    #[test]
    fn bounds_are_inclusive() {
        let mut p = policy("{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 4}}");
        let want: [(usize, Decision); 5] = [
            (1, NotSampled),
            (2, Sampled),
            (3, Sampled),
            (4, Sampled),
            (5, NotSampled),
        ];
        for (n, d) in want {
            assert_eq!(eval(&mut p, &trace(n)), d, "{n}");
        }
        let mut open = policy("{name: c, type: span_count, span_count: {min_spans: 3}}");
        assert_eq!(eval(&mut open, &trace(2)), NotSampled);
        assert_eq!(eval(&mut open, &trace(300)), Sampled);
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors("{name: c, type: span_count, span_count: {min_spans: 5, max_spans: 2}}"),
            vec![
                "policies[0].span_count.max_spans: must not be less than min_spans (5), or 0 for no upper bound"
            ]
        );
    }
}
