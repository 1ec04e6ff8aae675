//! `boolean_attribute`: a bool resource or span attribute equal to `value`.

use opentelemetry_proto::tonic::common::v1::any_value::Value;

use super::{Evaluate, TraceView, attribute_decision, issue};
use crate::config::{BooleanAttributeConfig, ConfigIssue};
use crate::decision::Decision;

/// Samples traces with a matching bool attribute. Only bool-typed values are
/// compared (otelcol reads any other type as `false`; here it never matches).
#[derive(Debug)]
pub(crate) struct BooleanAttribute {
    key: String,
    value: bool,
    invert: bool,
}

impl BooleanAttribute {
    pub(crate) fn build(
        cfg: &BooleanAttributeConfig,
        path: &str,
    ) -> Result<Self, Vec<ConfigIssue>> {
        if cfg.key.is_empty() {
            return Err(vec![issue(format!("{path}.key"), "must not be empty")]);
        }
        Ok(BooleanAttribute {
            key: cfg.key.clone(),
            value: cfg.value,
            invert: cfg.invert_match,
        })
    }
}

impl Evaluate for BooleanAttribute {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let wanted = self.value;
        attribute_decision(
            trace,
            &self.key,
            self.invert,
            |v, _| matches!(v, Value::BoolValue(b) if *b == wanted),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn table() {
        let mut t = policy(
            "{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}",
        );
        let mut f_ = policy(
            "{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: false}}",
        );
        let mut inv = policy(
            "{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: true, invert_match: true}}",
        );
        let cases = [
            (
                vec![],
                vec![b("debug", true)],
                Sampled,
                NotSampled,
                InvertedNotSampled,
            ),
            (
                vec![],
                vec![b("debug", false)],
                NotSampled,
                Sampled,
                InvertedSampled,
            ),
            (
                vec![b("debug", true)],
                vec![],
                Sampled,
                NotSampled,
                InvertedNotSampled,
            ),
            (
                vec![],
                vec![s("debug", "true")],
                NotSampled,
                NotSampled,
                InvertedSampled,
            ),
            (vec![], vec![], NotSampled, NotSampled, InvertedSampled),
        ];
        for (res, attrs, want_t, want_f, want_inv) in cases {
            let tr = [rs(res.clone(), vec![span(attrs.clone())])];
            assert_eq!(eval(&mut t, &tr), want_t, "{res:?} {attrs:?}");
            assert_eq!(eval(&mut f_, &tr), want_f, "{res:?} {attrs:?}");
            assert_eq!(eval(&mut inv, &tr), want_inv, "{res:?} {attrs:?}");
        }
    }
}
