//! `status_code`: any span whose status code is in the list.

use super::{Evaluate, TraceView, issue};
use crate::config::{ConfigIssue, StatusCodeConfig};
use crate::decision::Decision;

/// OTLP status code values.
const UNSET: i32 = 0;
const OK: i32 = 1;
const ERROR: i32 = 2;

/// Samples traces with a span whose status is one of the configured codes.
#[derive(Debug)]
pub(crate) struct StatusCode {
    /// Accepted codes as a bit set: bit `code` is set for each.
    codes: u8,
}

impl StatusCode {
    pub(crate) fn build(cfg: &StatusCodeConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if cfg.status_codes.is_empty() {
            issues.push(issue(
                format!("{path}.status_codes"),
                "expected at least one status code (OK, ERROR, UNSET)",
            ));
        }
        let mut codes = 0u8;
        for (i, name) in cfg.status_codes.iter().enumerate() {
            let code = match name.as_str() {
                "OK" => OK,
                "ERROR" => ERROR,
                "UNSET" => UNSET,
                other => {
                    issues.push(issue(
                        format!("{path}.status_codes[{i}]"),
                        format!("unknown status code {other:?}; expected one of OK, ERROR, UNSET"),
                    ));
                    continue;
                }
            };
            codes |= 1 << code;
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(StatusCode { codes })
    }
}

impl Evaluate for StatusCode {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let matched = trace.spans().any(|s| {
            let code = s.status.as_ref().map_or(UNSET, |st| st.code);
            (0..=2).contains(&code) && self.codes & (1 << code) != 0
        });
        if matched {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn table() {
        let mut errors =
            policy("{name: e, type: status_code, status_code: {status_codes: [ERROR]}}");
        let mut ok_unset =
            policy("{name: e, type: status_code, status_code: {status_codes: [OK, UNSET]}}");
        let no_status = span(vec![]);
        let cases = [
            (vec![with_status(span(vec![]), 2)], Sampled, NotSampled),
            (vec![with_status(span(vec![]), 1)], NotSampled, Sampled),
            (vec![no_status.clone()], NotSampled, Sampled), // no status = UNSET
            (vec![with_status(span(vec![]), 0)], NotSampled, Sampled),
            (vec![with_status(span(vec![]), 7)], NotSampled, NotSampled), // unknown code
            (
                vec![with_status(span(vec![]), 1), with_status(span(vec![]), 2)],
                Sampled,
                Sampled,
            ),
        ];
        for (spans, want_err, want_ok) in cases {
            let t = [rs(vec![], spans.clone())];
            assert_eq!(eval(&mut errors, &t), want_err, "{spans:?}");
            assert_eq!(eval(&mut ok_unset, &t), want_ok, "{spans:?}");
        }
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors(
                "{name: e, type: status_code, status_code: {status_codes: [ERROR, error]}}"
            ),
            vec![
                "policies[0].status_code.status_codes[1]: unknown status code \"error\"; expected one of OK, ERROR, UNSET"
            ]
        );
        assert_eq!(
            policy_errors("{name: e, type: status_code}"),
            vec![
                "policies[0].status_code.status_codes: expected at least one status code (OK, ERROR, UNSET)"
            ]
        );
    }
}
