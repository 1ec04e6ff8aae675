//! `trace_flags`: sampled when any span has the W3C "sampled" flag set.

use super::{Evaluate, TraceView};
use crate::decision::Decision;

/// The W3C trace-flags "sampled" bit, in the low byte of `Span.flags`.
const SAMPLED_FLAG: u32 = 0x01;

/// Samples traces with a span whose trace flags carry "sampled".
#[derive(Debug)]
pub(crate) struct TraceFlags;

impl Evaluate for TraceFlags {
    fn evaluate(&mut self, trace: &TraceView<'_>) -> Decision {
        if trace.spans().any(|s| s.flags & SAMPLED_FLAG != 0) {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::decision::Decision;

    #[test]
    fn table() {
        let mut p = policy("{name: f, type: trace_flags}");
        let flagged = |flags: u32| {
            let mut sp = span(vec![]);
            sp.flags = flags;
            sp
        };
        let cases = [
            (vec![flagged(0)], Decision::NotSampled),
            (vec![flagged(1)], Decision::Sampled),
            // only the sampled bit counts; 0x100 is the "has remote parent" bit
            (vec![flagged(0x100)], Decision::NotSampled),
            (vec![flagged(0x101)], Decision::Sampled),
            (vec![flagged(0), flagged(1)], Decision::Sampled),
            (vec![], Decision::NotSampled),
        ];
        for (spans, want) in cases {
            assert_eq!(
                eval(&mut p, &[rs(vec![], spans.clone())]),
                want,
                "{spans:?}"
            );
        }
    }
}
