//! `numeric_attribute`: a resource or span attribute whose number lies in
//! `[min_value, max_value]`.

use opentelemetry_proto::tonic::common::v1::any_value::Value;

use super::{Evaluate, TraceView, attribute_decision, issue};
use crate::config::{ConfigIssue, NumericAttributeConfig};
use crate::decision::Decision;

/// Samples traces with a numeric attribute in an inclusive range.
///
/// As in otelcol, a bound of 0 means "no bound". Int values are compared
/// exactly; double values are compared as doubles (otelcol reads every value
/// as an int, so a double there counts as 0 — a deliberate difference, a
/// double `500.0` matches `[400, 599]` here). Other value types never match.
#[derive(Debug)]
pub(crate) struct NumericAttribute {
    key: String,
    min: Option<i64>,
    max: Option<i64>,
    invert: bool,
}

impl NumericAttribute {
    pub(crate) fn build(
        cfg: &NumericAttributeConfig,
        path: &str,
    ) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if cfg.key.is_empty() {
            issues.push(issue(format!("{path}.key"), "must not be empty"));
        }
        let min = (cfg.min_value != 0).then_some(cfg.min_value);
        let max = (cfg.max_value != 0).then_some(cfg.max_value);
        match (min, max) {
            (None, None) => issues.push(issue(
                path,
                "at least one of min_value or max_value must be set (0 means unset)",
            )),
            (Some(lo), Some(hi)) if hi < lo => issues.push(issue(
                format!("{path}.max_value"),
                format!("must not be less than min_value ({lo})"),
            )),
            _ => {}
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(NumericAttribute {
            key: cfg.key.clone(),
            min,
            max,
            invert: cfg.invert_match,
        })
    }

    fn in_range(&self, value: &Value) -> bool {
        match *value {
            Value::IntValue(v) => {
                self.min.is_none_or(|lo| v >= lo) && self.max.is_none_or(|hi| v <= hi)
            }
            #[allow(clippy::cast_precision_loss)]
            Value::DoubleValue(v) => {
                self.min.is_none_or(|lo| v >= lo as f64) && self.max.is_none_or(|hi| v <= hi as f64)
            }
            _ => false,
        }
    }
}

impl Evaluate for NumericAttribute {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        attribute_decision(trace, &self.key, self.invert, |v, _| self.in_range(v))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn range_table() {
        let mut p = policy(
            "{name: n, type: numeric_attribute, numeric_attribute: {key: code, min_value: 400, max_value: 599}}",
        );
        let cases = [
            (vec![], vec![i("code", 399)], NotSampled),
            (vec![], vec![i("code", 400)], Sampled),
            (vec![], vec![i("code", 599)], Sampled),
            (vec![], vec![i("code", 600)], NotSampled),
            (vec![], vec![f("code", 500.5)], Sampled),
            (vec![], vec![f("code", 399.9)], NotSampled),
            (vec![], vec![f("code", f64::NAN)], NotSampled),
            (vec![], vec![s("code", "500")], NotSampled), // strings never match
            (vec![], vec![i("other", 500)], NotSampled),
            (vec![i("code", 404)], vec![], Sampled), // resource attribute
        ];
        for (res, attrs, want) in cases {
            let t = [rs(res.clone(), vec![span(attrs.clone())])];
            assert_eq!(eval(&mut p, &t), want, "{res:?} {attrs:?}");
        }
        // any span matching is enough
        let t = [rs(
            vec![],
            vec![span(vec![i("code", 200)]), span(vec![i("code", 503)])],
        )];
        assert_eq!(eval(&mut p, &t), Sampled);
    }

    #[test]
    fn zero_bound_means_unbounded() {
        let mut p = policy(
            "{name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 10}}",
        );
        assert_eq!(
            eval(&mut p, &[rs(vec![], vec![span(vec![i("k", i64::MAX)])])]),
            Sampled
        );
        assert_eq!(
            eval(&mut p, &[rs(vec![], vec![span(vec![i("k", 9)])])]),
            NotSampled
        );
        let mut p = policy(
            "{name: n, type: numeric_attribute, numeric_attribute: {key: k, max_value: 10}}",
        );
        assert_eq!(
            eval(&mut p, &[rs(vec![], vec![span(vec![i("k", i64::MIN)])])]),
            Sampled
        );
    }

    #[test]
    fn invert_match() {
        let mut p = policy(
            "{name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 1, max_value: 5, invert_match: true}}",
        );
        let cases = [
            (vec![span(vec![i("k", 3)])], InvertedNotSampled),
            (vec![span(vec![i("k", 9)])], InvertedSampled),
            (vec![span(vec![])], InvertedSampled), // key absent
            (
                vec![span(vec![i("k", 9)]), span(vec![i("k", 2)])],
                InvertedNotSampled,
            ),
        ];
        for (spans, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(vec![], spans.clone())]),
                want,
                "{spans:?}"
            );
        }
    }

    #[test]
    fn config_errors() {
        assert_eq!(
            policy_errors("{name: n, type: numeric_attribute, numeric_attribute: {key: k}}"),
            vec![
                "policies[0].numeric_attribute: at least one of min_value or max_value must be set (0 means unset)"
            ]
        );
        assert_eq!(
            policy_errors(
                "{name: n, type: numeric_attribute, numeric_attribute: {min_value: 5, max_value: 1}}"
            ),
            vec![
                "policies[0].numeric_attribute.key: must not be empty",
                "policies[0].numeric_attribute.max_value: must not be less than min_value (5)",
            ]
        );
    }
}
