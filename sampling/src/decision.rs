//! Policy decisions and how they combine into the trace's final decision.
//!
//! The combination follows otelcol's order exactly:
//! 1. any [`Decision::Dropped`] -> dropped (not sampled);
//! 2. any [`Decision::InvertedNotSampled`] -> not sampled (a veto);
//! 3. any [`Decision::Sampled`] -> sampled;
//! 4. any [`Decision::InvertedSampled`] and no [`Decision::NotSampled`] -> sampled;
//! 5. otherwise not sampled.
//!
//! `drop` policies are evaluated first, and evaluation stops at the first
//! `Dropped`; with `sample_on_first_match` it also stops at the first
//! `Sampled`.

use std::sync::Arc;

use crate::config::{ConfigError, ConfigIssue, PolicyConfig};
use crate::policy::{self, BoxedPolicy, TraceView};
use crate::stats::SamplerStats;

/// What one policy says about one trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Keep the trace.
    Sampled,
    /// This policy does not keep the trace.
    NotSampled,
    /// From `invert_match`: nothing matched (or the key is absent), keep the
    /// trace unless another policy said [`Decision::NotSampled`].
    InvertedSampled,
    /// From `invert_match`: a value matched; this vetoes every `Sampled`.
    InvertedNotSampled,
    /// From a `drop` policy: discard the trace whatever the others say.
    Dropped,
}

impl Decision {
    /// The decision with inversion collapsed: `InvertedSampled` ->
    /// `Sampled`, `InvertedNotSampled` -> `NotSampled` (what `and`, `drop`
    /// and `composite` do with their sub-policies' results).
    pub const fn collapsed(self) -> Decision {
        match self {
            Decision::InvertedSampled => Decision::Sampled,
            Decision::InvertedNotSampled => Decision::NotSampled,
            other => other,
        }
    }

    /// The `sampled` label otelcol puts on this decision in metrics.
    pub const fn is_sampled_label(self) -> bool {
        matches!(self, Decision::Sampled | Decision::InvertedSampled)
    }
}

/// The outcome for a whole trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinalDecision {
    /// The trace is kept and forwarded.
    Sampled,
    /// The trace is not kept.
    NotSampled,
    /// A `drop` policy discarded the trace.
    Dropped,
}

impl FinalDecision {
    /// Whether the trace is kept.
    pub const fn is_sampled(self) -> bool {
        matches!(self, FinalDecision::Sampled)
    }
}

/// The final decision with the top-level policies that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) decision: FinalDecision,
    /// Indexes (into [`PolicySet::names`]) of the deciding policies, the one
    /// otelcol records as `tailsampling.policy` first.
    pub(crate) policies: Vec<usize>,
}

/// Combines policy results in otelcol's order. `results` are in evaluation
/// order, as `(policy index, decision)`.
pub(crate) fn combine(results: &[(usize, Decision)]) -> Verdict {
    let with = |wanted: Decision| -> Vec<usize> {
        results
            .iter()
            .filter(|(_, d)| *d == wanted)
            .map(|(i, _)| *i)
            .collect()
    };
    let any = |wanted: Decision| results.iter().any(|(_, d)| *d == wanted);
    let (decision, policies) = if any(Decision::Dropped) {
        (FinalDecision::Dropped, with(Decision::Dropped))
    } else if any(Decision::InvertedNotSampled) {
        (
            FinalDecision::NotSampled,
            with(Decision::InvertedNotSampled),
        )
    } else if any(Decision::Sampled) {
        (FinalDecision::Sampled, with(Decision::Sampled))
    } else if any(Decision::InvertedSampled) && !any(Decision::NotSampled) {
        (FinalDecision::Sampled, with(Decision::InvertedSampled))
    } else {
        (FinalDecision::NotSampled, Vec::new())
    };
    Verdict { decision, policies }
}

/// The top-level policies, ready to evaluate traces.
#[derive(Debug)]
pub(crate) struct PolicySet {
    /// Evaluation order: `drop` policies first, then the others, each group
    /// in config order. Each entry keeps its config index.
    ordered: Vec<(usize, BoxedPolicy)>,
    /// Names by config index.
    names: Vec<Arc<str>>,
    sample_on_first_match: bool,
    results: Vec<(usize, Decision)>,
}

impl PolicySet {
    /// Builds every policy, collecting all configuration problems.
    pub(crate) fn build(
        configs: &[PolicyConfig],
        sample_on_first_match: bool,
    ) -> Result<PolicySet, ConfigError> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        if configs.is_empty() {
            issues.push(ConfigIssue {
                path: "policies".into(),
                message: "at least one policy is required".into(),
            });
        }
        let mut drops = Vec::new();
        let mut others = Vec::new();
        let mut names: Vec<Arc<str>> = Vec::with_capacity(configs.len());
        for (i, cfg) in configs.iter().enumerate() {
            let path = format!("policies[{i}]");
            if cfg.name.is_empty() {
                issues.push(ConfigIssue {
                    path: format!("{path}.name"),
                    message: "policy name cannot be empty".into(),
                });
            } else if names.iter().any(|n| **n == *cfg.name) {
                issues.push(ConfigIssue {
                    path: format!("{path}.name"),
                    message: format!("duplicate policy name {:?}", cfg.name),
                });
            }
            names.push(Arc::from(cfg.name.as_str()));
            match policy::build(cfg, &path, policy::Level::Top) {
                Ok(built) if cfg.policy_type == "drop" => drops.push((i, built)),
                Ok(built) => others.push((i, built)),
                Err(mut errs) => issues.append(&mut errs),
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError::new(issues));
        }
        drops.append(&mut others);
        Ok(PolicySet {
            ordered: drops,
            names,
            sample_on_first_match,
            results: Vec::with_capacity(configs.len()),
        })
    }

    /// Policy names, by config index.
    pub(crate) fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Evaluates the trace and records per-policy counters.
    pub(crate) fn decide(&mut self, trace: &TraceView<'_>, stats: &mut SamplerStats) -> Verdict {
        self.results.clear();
        for (index, policy) in &mut self.ordered {
            let decision = policy.evaluate(trace);
            stats.record_policy_decision(*index, decision);
            self.results.push((*index, decision));
            if decision == Decision::Dropped {
                break;
            }
            if self.sample_on_first_match && decision == Decision::Sampled {
                break;
            }
        }
        combine(&self.results)
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    fn decide(results: &[Decision]) -> (FinalDecision, Vec<usize>) {
        let indexed: Vec<(usize, Decision)> = results.iter().copied().enumerate().collect();
        let v = combine(&indexed);
        (v.decision, v.policies)
    }

    #[test]
    fn combination_table() {
        use FinalDecision as F;
        let table: &[(&[Decision], F, &[usize])] = &[
            (&[], F::NotSampled, &[]),
            (&[Sampled], F::Sampled, &[0]),
            (&[NotSampled], F::NotSampled, &[]),
            (&[NotSampled, Sampled, Sampled], F::Sampled, &[1, 2]),
            // a drop wins over everything
            (&[Sampled, Dropped], F::Dropped, &[1]),
            (&[InvertedSampled, Dropped, NotSampled], F::Dropped, &[1]),
            // an inverted-not-sampled vetoes another policy's sample
            (&[Sampled, InvertedNotSampled], F::NotSampled, &[1]),
            (
                &[InvertedNotSampled, Sampled, InvertedSampled],
                F::NotSampled,
                &[0],
            ),
            // inverted-sampled samples unless something said not sampled
            (&[InvertedSampled], F::Sampled, &[0]),
            (&[InvertedSampled, NotSampled], F::NotSampled, &[]),
            (&[InvertedSampled, Sampled], F::Sampled, &[1]),
            (&[NotSampled, InvertedSampled, Sampled], F::Sampled, &[2]),
        ];
        for (results, want, policies) in table {
            assert_eq!(
                decide(results),
                (*want, policies.to_vec()),
                "results {results:?}"
            );
        }
    }

    #[test]
    fn collapse() {
        assert_eq!(InvertedSampled.collapsed(), Sampled);
        assert_eq!(InvertedNotSampled.collapsed(), NotSampled);
        assert_eq!(Dropped.collapsed(), Dropped);
        assert!(InvertedSampled.is_sampled_label());
        assert!(!InvertedNotSampled.is_sampled_label());
    }
}
