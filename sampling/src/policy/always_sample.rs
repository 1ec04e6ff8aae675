//! `always_sample`: every trace is sampled.

use super::{Evaluate, TraceView};
use crate::decision::Decision;

/// Samples every trace.
#[derive(Debug)]
pub(crate) struct AlwaysSample;

impl Evaluate for AlwaysSample {
    fn evaluate(&mut self, _trace: &TraceView<'_>) -> Decision {
        Decision::Sampled
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision;

    #[test]
    fn samples_everything() {
        let mut p = policy("{name: a, type: always_sample}");
        assert_eq!(eval(&mut p, &[]), Decision::Sampled);
        assert_eq!(
            eval(&mut p, &[rs(vec![], vec![span(vec![])])]),
            Decision::Sampled
        );
    }
}
