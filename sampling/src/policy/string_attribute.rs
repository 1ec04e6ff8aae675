//! `string_attribute`: a string resource or span attribute equal to one of
//! the values, or matching one of the regexes.
//!
//! Regexes are RE2 syntax (the `regex` crate accepts the same language) and
//! unanchored, as Go's `MatchString`: `ollyscale-.*` also matches
//! `my-ollyscale-proxy`. Only string-typed values are compared: an int
//! `http.status_code` 404 never matches `4[0-9]{2}`. As in otelcol, an empty
//! string on a span is never compared, an empty string on a resource is.

use std::collections::HashSet;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use regex::Regex;

use super::{Evaluate, Origin, TraceView, attribute_decision, issue};
use crate::cache::LruCache;
use crate::config::{ConfigIssue, StringAttributeConfig};
use crate::decision::Decision;

/// otelcol's default `cache_max_size`.
const DEFAULT_CACHE_SIZE: usize = 128;
/// Longer values are matched without caching, so the cache's memory stays
/// bounded by `cache_max_size` whatever the values are.
const MAX_CACHED_VALUE_LEN: usize = 256;

#[derive(Debug)]
enum Matcher {
    Exact(HashSet<String>),
    Regex {
        regexes: Vec<Regex>,
        /// value -> whether any regex matched.
        results: LruCache<String, bool>,
    },
}

impl Matcher {
    fn matches(&mut self, value: &str) -> bool {
        match self {
            Matcher::Exact(values) => values.contains(value),
            Matcher::Regex { regexes, results } => {
                if let Some(&hit) = results.get(value) {
                    return hit;
                }
                let hit = regexes.iter().any(|r| r.is_match(value));
                if value.len() <= MAX_CACHED_VALUE_LEN {
                    results.insert(value.to_owned(), hit);
                }
                hit
            }
        }
    }
}

/// Samples traces with a matching string attribute.
#[derive(Debug)]
pub(crate) struct StringAttribute {
    key: String,
    matcher: Matcher,
    invert: bool,
}

impl StringAttribute {
    pub(crate) fn build(cfg: &StringAttributeConfig, path: &str) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if cfg.key.is_empty() {
            issues.push(issue(format!("{path}.key"), "must not be empty"));
        }
        let matcher = if cfg.enabled_regex_matching {
            let mut regexes = Vec::with_capacity(cfg.values.len());
            for (i, pattern) in cfg.values.iter().enumerate() {
                match Regex::new(pattern) {
                    Ok(r) => regexes.push(r),
                    Err(e) => issues.push(issue(
                        format!("{path}.values[{i}]"),
                        format!("invalid regex: {}", one_line(&e.to_string())),
                    )),
                }
            }
            let size = usize::try_from(cfg.cache_max_size)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_CACHE_SIZE);
            Matcher::Regex {
                regexes,
                results: LruCache::new(size),
            }
        } else {
            // otelcol ignores empty strings in the exact set.
            Matcher::Exact(
                cfg.values
                    .iter()
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .collect(),
            )
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(StringAttribute {
            key: cfg.key.clone(),
            matcher,
            invert: cfg.invert_match,
        })
    }
}

/// The regex crate's errors span several lines (the pattern with a caret);
/// keep them on one line for a config error.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Evaluate for StringAttribute {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        let matcher = &mut self.matcher;
        attribute_decision(trace, &self.key, self.invert, |value, origin| match value {
            Value::StringValue(s) if origin == Origin::Resource || !s.is_empty() => {
                matcher.matches(s)
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision::*;

    #[test]
    fn exact_values() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: env, values: [prod, staging]}}",
        );
        let cases = [
            (vec![], vec![s("env", "prod")], Sampled),
            (vec![], vec![s("env", "production")], NotSampled), // exact, not prefix
            (vec![], vec![s("env", "dev")], NotSampled),
            (vec![s("env", "staging")], vec![], Sampled), // resource attribute
            (vec![], vec![s("other", "prod")], NotSampled),
            (vec![], vec![i("env", 1)], NotSampled),
        ];
        for (res, attrs, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(res.clone(), vec![span(attrs.clone())])]),
                want,
                "{res:?} {attrs:?}"
            );
        }
    }

    #[test]
    fn regexes_are_unanchored_and_string_only() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: http.status_code, values: ['4[0-9]{2}', '5[0-9]{2}'], enabled_regex_matching: true}}",
        );
        let cases = [
            (vec![s("http.status_code", "404")], Sampled),
            (vec![s("http.status_code", "503")], Sampled),
            (vec![s("http.status_code", "200")], NotSampled),
            (vec![s("http.status_code", "x1404")], Sampled), // unanchored
            (vec![i("http.status_code", 404)], NotSampled),  // int: never compared
            (vec![i("http.status_code", 500)], NotSampled),
            (vec![f("http.status_code", 500.0)], NotSampled),
        ];
        for (attrs, want) in cases {
            // twice: the second answer comes from the LRU cache
            for _ in 0..2 {
                assert_eq!(
                    eval(&mut p, &[rs(vec![], vec![span(attrs.clone())])]),
                    want,
                    "{attrs:?}"
                );
            }
        }
        let mut svc = policy(
            "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [ollyscale-.*], enabled_regex_matching: true}}",
        );
        let t = [rs(
            vec![s("service.name", "my-ollyscale-proxy")],
            vec![span(vec![])],
        )];
        assert_eq!(eval(&mut svc, &t), Sampled);
    }

    #[test]
    fn empty_strings_follow_otelcol() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: k, values: ['^$'], enabled_regex_matching: true}}",
        );
        // an empty span value is skipped, an empty resource value is compared
        assert_eq!(
            eval(&mut p, &[rs(vec![], vec![span(vec![s("k", "")])])]),
            NotSampled
        );
        assert_eq!(
            eval(&mut p, &[rs(vec![s("k", "")], vec![span(vec![])])]),
            Sampled
        );
        let mut exact =
            policy("{name: s, type: string_attribute, string_attribute: {key: k, values: ['']}}");
        assert_eq!(
            eval(&mut exact, &[rs(vec![s("k", "")], vec![span(vec![])])]),
            NotSampled
        );
    }

    #[test]
    fn invert_match() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [ollyscale-.*], enabled_regex_matching: true, invert_match: true}}",
        );
        let cases = [
            (
                vec![s("service.name", "ollyscale-api")],
                vec![],
                InvertedNotSampled,
            ),
            (vec![s("service.name", "checkout")], vec![], InvertedSampled),
            (vec![], vec![], InvertedSampled), // key absent everywhere
            (vec![i("service.name", 3)], vec![], InvertedSampled), // not a string
            (
                vec![s("service.name", "checkout")],
                vec![s("service.name", "ollyscale-x")],
                InvertedNotSampled,
            ),
        ];
        for (res, attrs, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(res.clone(), vec![span(attrs.clone())])]),
                want,
                "{res:?} {attrs:?}"
            );
        }
    }

    #[test]
    fn tiny_cache_still_answers_right() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: k, values: ['^a'], enabled_regex_matching: true, cache_max_size: 1}}",
        );
        for v in ["ab", "ba", "ab", "ac", "ba", "ba"] {
            let want = if v.starts_with('a') {
                Sampled
            } else {
                NotSampled
            };
            assert_eq!(
                eval(&mut p, &[rs(vec![], vec![span(vec![s("k", v)])])]),
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn long_values_are_matched_but_not_cached() {
        let mut p = policy(
            "{name: s, type: string_attribute, string_attribute: {key: k, values: ['z$'], enabled_regex_matching: true}}",
        );
        let long = format!("{}z", "a".repeat(10_000));
        for _ in 0..2 {
            assert_eq!(
                eval(&mut p, &[rs(vec![], vec![span(vec![s("k", &long)])])]),
                Sampled
            );
        }
    }

    #[test]
    fn config_errors() {
        let errs = policy_errors(
            "{name: s, type: string_attribute, string_attribute: {key: k, values: [ok, '(unclosed'], enabled_regex_matching: true}}",
        );
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("policies[0].string_attribute.values[1]: invalid regex: "),
            "{errs:?}"
        );
        assert!(!errs[0].contains('\n'));
        assert_eq!(
            policy_errors("{name: s, type: string_attribute, string_attribute: {values: [a]}}"),
            vec!["policies[0].string_attribute.key: must not be empty"]
        );
    }
}
