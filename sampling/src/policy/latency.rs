//! `latency`: the trace's duration, from its earliest span start to its
//! latest span end, within the configured bounds.

use super::{Evaluate, TraceView, issue};
use crate::config::{ConfigIssue, LatencyConfig};
use crate::decision::Decision;

/// Samples traces by duration. Without an upper bound: `duration >=
/// threshold_ms`. With one: `threshold_ms < duration <= upper_threshold_ms`
/// (otelcol's bounds). Durations are whole milliseconds, truncated.
#[derive(Debug)]
pub(crate) struct Latency {
    threshold_ms: i64,
    upper_threshold_ms: i64,
}

impl Latency {
    pub(crate) fn build(cfg: &LatencyConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if cfg.threshold_ms < 0 {
            issues.push(issue(
                format!("{path}.threshold_ms"),
                "must not be negative",
            ));
        }
        if cfg.upper_threshold_ms < 0 {
            issues.push(issue(
                format!("{path}.upper_threshold_ms"),
                "must not be negative (0 means no upper bound)",
            ));
        } else if cfg.upper_threshold_ms != 0 && cfg.upper_threshold_ms <= cfg.threshold_ms {
            issues.push(issue(
                format!("{path}.upper_threshold_ms"),
                format!(
                    "must be greater than threshold_ms ({}), or 0 for no upper bound",
                    cfg.threshold_ms
                ),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Latency {
            threshold_ms: cfg.threshold_ms,
            upper_threshold_ms: cfg.upper_threshold_ms,
        })
    }
}

impl Evaluate for Latency {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let mut bounds: Option<(u64, u64)> = None;
        for s in trace.spans() {
            bounds = Some(match bounds {
                None => (s.start_time_unix_nano, s.end_time_unix_nano),
                Some((lo, hi)) => (lo.min(s.start_time_unix_nano), hi.max(s.end_time_unix_nano)),
            });
        }
        let Some((start, end)) = bounds else {
            return Decision::NotSampled;
        };
        // Truncated toward zero, like Go's Duration.Milliseconds().
        let ms = (i128::from(end) - i128::from(start)) / 1_000_000;
        let threshold = i128::from(self.threshold_ms);
        let sampled = if self.upper_threshold_ms == 0 {
            ms >= threshold
        } else {
            threshold < ms && ms <= i128::from(self.upper_threshold_ms)
        };
        if sampled {
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

    fn trace(times: &[(u64, u64)]) -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
        vec![rs(
            vec![],
            times
                .iter()
                .map(|&(a, b)| with_times(span(vec![]), a, b))
                .collect(),
        )]
    }

    #[test]
    fn lower_bound_only_is_inclusive() {
        let mut p = policy("{name: l, type: latency, latency: {threshold_ms: 100}}");
        let cases: [(&[(u64, u64)], Decision); 6] = [
            (&[(0, 99)], NotSampled),
            (&[(0, 100)], Sampled),
            (&[(10, 50), (60, 110)], Sampled), // 100 ms from earliest start to latest end
            (&[(10, 50), (60, 109)], NotSampled),
            (&[(500, 400)], NotSampled), // end before start: negative duration
            (&[], NotSampled),
        ];
        for (times, want) in cases {
            assert_eq!(eval(&mut p, &trace(times)), want, "{times:?}");
        }
    }

    #[test]
    fn with_upper_bound_lower_is_exclusive() {
        let mut p = policy(
            "{name: l, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}",
        );
        let cases: [(&[(u64, u64)], Decision); 4] = [
            (&[(0, 100)], NotSampled),
            (&[(0, 101)], Sampled),
            (&[(0, 200)], Sampled),
            (&[(0, 150), (100, 201)], NotSampled),
        ];
        for (times, want) in cases {
            assert_eq!(eval(&mut p, &trace(times)), want, "{times:?}");
        }
    }

    #[test]
    fn truncates_to_milliseconds() {
        let mut p = policy("{name: l, type: latency, latency: {threshold_ms: 1}}");
        let mut sp = span(vec![]);
        sp.start_time_unix_nano = 0;
        sp.end_time_unix_nano = 999_999;
        assert_eq!(eval(&mut p, &[rs(vec![], vec![sp])]), NotSampled);
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors(
                "{name: l, type: latency, latency: {threshold_ms: 5, upper_threshold_ms: 5}}"
            ),
            vec![
                "policies[0].latency.upper_threshold_ms: must be greater than threshold_ms (5), or 0 for no upper bound"
            ]
        );
        assert_eq!(
            policy_errors("{name: l, type: latency, latency: {threshold_ms: -1}}"),
            vec!["policies[0].latency.threshold_ms: must not be negative"]
        );
    }
}
