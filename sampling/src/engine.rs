//! The sampler: buffers spans by trace, decides traces when they are due,
//! and remembers decisions for late spans.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::cache::{CachedDecision, DecisionCache};
use crate::clock::Timestamp;
use crate::config::{ConfigError, ConfigIssue, SamplerConfig};
use crate::decision::{FinalDecision, PolicySet};
use crate::encoded::{EncodedGroup, EncodedSpans};
use crate::policy::TraceView;
use crate::stats::SamplerStats;
use crate::trace_buffer::{BufferedTrace, SpanGroup, TraceBuffer};
use crate::trace_id::TraceId;

/// The scope attribute naming the policy that sampled a trace, when
/// [`Sampler::set_record_policy`] is on (otelcol's `recordpolicy` gate).
pub const POLICY_ATTRIBUTE: &str = "tailsampling.policy";
/// The scope attribute marking late spans forwarded from the decision
/// cache, when [`Sampler::set_record_policy`] is on.
pub const CACHED_DECISION_ATTRIBUTE: &str = "tailsampling.cached_decision";

/// What made the engine decide a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionTrigger {
    /// `decision_wait` elapsed since the trace's first span.
    DecisionWait,
    /// `decision_wait_after_root_received` elapsed since its root span.
    RootSpanReceived,
    /// Decided early: `num_traces` traces were buffered and a new one came.
    TraceLimit,
    /// Decided early: the buffered spans exceeded `max_memory_mib`.
    MemoryLimit,
    /// Decided at once: the trace exceeded `maximum_trace_size_bytes`.
    TraceSizeLimit,
    /// Decided by [`Sampler::flush_all`].
    Shutdown,
}

impl DecisionTrigger {
    /// Whether the trace was decided before its wait was over because a
    /// limit was reached.
    pub const fn is_early(self) -> bool {
        matches!(
            self,
            DecisionTrigger::TraceLimit
                | DecisionTrigger::MemoryLimit
                | DecisionTrigger::TraceSizeLimit
        )
    }
}

/// A trace the engine has decided.
#[derive(Clone, Debug, PartialEq)]
pub struct DecidedTrace {
    /// The trace.
    pub trace_id: TraceId,
    /// Whether it is kept; the same as `decision.is_sampled()`.
    pub sampled: bool,
    /// The final decision.
    pub decision: FinalDecision,
    /// The top-level policies that made the decision, in evaluation order:
    /// those that sampled it (or vetoed it with `invert_match`, or dropped
    /// it). Empty when no policy sampled it. The first is the one otelcol
    /// records as `tailsampling.policy`.
    pub policies: Vec<Arc<str>>,
    /// What triggered the decision.
    pub trigger: DecisionTrigger,
    /// When the trace's first span arrived.
    pub first_seen: Timestamp,
    /// Number of spans decided.
    pub span_count: u64,
    /// The spans, regrouped by resource and scope, when sampled; empty when
    /// not sampled.
    pub resource_spans: Vec<ResourceSpans>,
    /// The sampled spans as they were buffered, encoded, when nothing
    /// changed them since (no `tailsampling.policy` to record): the
    /// processor forwards these bytes instead of encoding `resource_spans`.
    pub(crate) encoded: Option<Vec<SpanGroup>>,
}

/// What [`Sampler::ingest`] did with a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestOutcome {
    /// Late spans of traces already decided as sampled: forward them now.
    pub forward: Vec<ResourceSpans>,
    /// Late spans of traces already decided as not sampled (discarded).
    pub late_not_sampled_spans: u64,
    /// Late spans forwarded in [`IngestOutcome::forward`].
    pub late_sampled_spans: u64,
    /// Spans added to the buffer.
    pub buffered_spans: u64,
    /// Traces decided during this call because a limit was reached
    /// (`num_traces`, `max_memory_mib`, `maximum_trace_size_bytes`):
    /// forward the sampled ones as after [`Sampler::tick`].
    pub decided: Vec<DecidedTrace>,
}

/// Limits and waits, validated.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    decision_wait: Duration,
    root_wait: Option<Duration>,
    num_traces: usize,
    max_memory_bytes: Option<u64>,
    max_trace_bytes: Option<u64>,
    sampled_cache: usize,
    not_sampled_cache: usize,
    drop_pending_on_shutdown: bool,
    capacity_hint: usize,
}

impl Settings {
    pub(crate) fn from_config(cfg: &SamplerConfig) -> Result<Settings, ConfigError> {
        let mut issues = Vec::new();
        let mut problem = |path: &str, message: &str| {
            issues.push(ConfigIssue {
                path: path.into(),
                message: message.into(),
            });
        };
        if cfg.num_traces == 0 {
            problem("num_traces", "must be greater than 0");
        }
        if cfg.block_on_overflow {
            problem(
                "block_on_overflow",
                "true is not supported: when num_traces is reached the oldest trace is decided early instead of blocking",
            );
        }
        if let Some(strategy) = &cfg.sampling_strategy
            && strategy != "trace-complete"
        {
            problem(
                "sampling_strategy",
                &format!("{strategy:?} is not supported; expected \"trace-complete\""),
            );
        }
        if !issues.is_empty() {
            return Err(ConfigError::new(issues));
        }
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let num_traces = to_usize(cfg.num_traces);
        let wait_secs = cfg.decision_wait.as_secs().max(1);
        let capacity_hint = to_usize(cfg.expected_new_traces_per_sec.saturating_mul(wait_secs))
            .min(num_traces)
            .min(1 << 20);
        Ok(Settings {
            decision_wait: cfg.decision_wait,
            root_wait: (!cfg.decision_wait_after_root_received.is_zero())
                .then_some(cfg.decision_wait_after_root_received),
            num_traces,
            max_memory_bytes: (cfg.max_memory_mib > 0)
                .then(|| cfg.max_memory_mib.saturating_mul(1024 * 1024)),
            max_trace_bytes: (cfg.maximum_trace_size_bytes > 0)
                .then_some(cfg.maximum_trace_size_bytes),
            sampled_cache: to_usize(cfg.effective_sampled_cache_size()),
            not_sampled_cache: to_usize(cfg.effective_non_sampled_cache_size()),
            drop_pending_on_shutdown: cfg.drop_pending_traces_on_shutdown,
            capacity_hint,
        })
    }
}

/// A tail sampler: feed it spans with [`Sampler::ingest`], call
/// [`Sampler::tick`] regularly, and forward the sampled traces it returns.
///
/// Time is always passed in, so the engine is deterministic; it must not go
/// backwards (an earlier `now` is treated as the latest one seen). The
/// engine is synchronous and single-threaded; run one per shard (by trace ID)
/// to use several cores.
#[derive(Debug)]
pub struct Sampler {
    settings: Settings,
    policies: PolicySet,
    buffer: TraceBuffer,
    sampled: DecisionCache,
    not_sampled: DecisionCache,
    stats: SamplerStats,
    now: Timestamp,
    record_policy: bool,
}

impl Sampler {
    /// Builds a sampler, checking the whole configuration.
    pub fn new(config: SamplerConfig) -> Result<Sampler, ConfigError> {
        let settings = Settings::from_config(&config);
        let policies = PolicySet::build(&config.policies, config.sample_on_first_match);
        let (settings, policies) = match (settings, policies) {
            (Ok(s), Ok(p)) => (s, p),
            (Err(a), Err(b)) => {
                let mut issues = a.issues().to_vec();
                issues.extend_from_slice(b.issues());
                return Err(ConfigError::new(issues));
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        Ok(Sampler {
            buffer: TraceBuffer::new(
                settings.decision_wait,
                settings.root_wait,
                settings.capacity_hint,
            ),
            sampled: DecisionCache::new(settings.sampled_cache),
            not_sampled: DecisionCache::new(settings.not_sampled_cache),
            stats: SamplerStats::new(policies.names()),
            settings,
            policies,
            now: Timestamp::ZERO,
            record_policy: false,
        })
    }

    /// Builds a sampler from the processor section's YAML.
    pub fn from_yaml(yaml: &str) -> Result<Sampler, ConfigError> {
        Sampler::new(SamplerConfig::from_yaml(yaml)?)
    }

    /// Adds the [`POLICY_ATTRIBUTE`] scope attribute to sampled traces, and
    /// [`CACHED_DECISION_ATTRIBUTE`] to late spans forwarded from the cache.
    /// Off by default, as otelcol's `processor.tailsamplingprocessor.recordpolicy`.
    pub fn set_record_policy(&mut self, on: bool) {
        self.record_policy = on;
    }

    /// Top-level policy names, in config order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.names().iter().map(|n| &**n)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &SamplerStats {
        &self.stats
    }

    /// Number of undecided traces.
    pub fn pending_traces(&self) -> usize {
        self.buffer.len()
    }

    /// Number of buffered spans.
    pub fn buffered_spans(&self) -> u64 {
        self.buffer.span_count()
    }

    /// Bytes accounted to buffered spans (what `max_memory_mib` limits).
    pub fn buffered_bytes(&self) -> u64 {
        self.buffer.memory_bytes()
    }

    /// No trace is due before this time, so a runtime may sleep until then
    /// (a trace may still not be due then). `None` when nothing is buffered.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.buffer.next_due()
    }

    fn advance(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.now
    }

    /// Takes a batch of spans. Spans are grouped by trace ID across
    /// resources and scopes. A span of a trace already decided (still in a
    /// decision cache) follows that decision at once: forwarded in
    /// [`IngestOutcome::forward`] if sampled, counted and discarded if not.
    /// Other spans are buffered until their trace is due.
    ///
    /// The spans are encoded first (the buffer keeps them encoded); a
    /// caller that has them encoded already uses [`Sampler::ingest_encoded`].
    pub fn ingest(&mut self, batch: Vec<ResourceSpans>, now: Timestamp) -> IngestOutcome {
        self.ingest_encoded(EncodedSpans::from_resource_spans(&batch), now)
    }

    /// [`Sampler::ingest`] for spans still in their protobuf encoding: they
    /// are buffered as they are, without decoding.
    pub fn ingest_encoded(&mut self, batch: EncodedSpans, now: Timestamp) -> IngestOutcome {
        let now = self.advance(now);
        let mut out = IngestOutcome::default();
        for group in batch.groups {
            let mut late: Vec<Span> = Vec::new();
            let mut late_policies: Vec<Option<u32>> = Vec::new();
            for span in &group.spans {
                let id = span.trace_id;
                if let Some(hit) = self.sampled.get(&id).copied() {
                    self.late_span(hit, now);
                    self.stats.late_spans.sampled += 1;
                    out.late_sampled_spans += 1;
                    match Span::decode(span.span_bytes()) {
                        Ok(decoded) => {
                            late.push(decoded);
                            if self.record_policy {
                                late_policies.push(hit.policy);
                            }
                        }
                        // Bytes the receiver's scanner or prost produced
                        // decode; never panic, count what cannot be kept.
                        Err(_) => self.stats.policy_evaluation_error += 1,
                    }
                    continue;
                }
                if let Some(hit) = self.not_sampled.get(&id).copied() {
                    self.late_span(hit, now);
                    self.stats.late_spans.not_sampled += 1;
                    out.late_not_sampled_spans += 1;
                    continue;
                }
                if !self.buffer.contains(&id) && self.buffer.len() >= self.settings.num_traces {
                    self.decide_oldest(DecisionTrigger::TraceLimit, now, &mut out.decided);
                }
                let appended = self.buffer.append(
                    id,
                    span.root,
                    &span.field,
                    &group.resource,
                    &group.scope,
                    now,
                );
                out.buffered_spans += 1;
                if appended.new_trace {
                    self.stats.new_trace_id_received += 1;
                }
                if self
                    .settings
                    .max_trace_bytes
                    .is_some_and(|max| appended.encoded_size > max)
                    && let Some(decided) =
                        self.decide(id, DecisionTrigger::TraceSizeLimit, now, None)
                {
                    out.decided.push(decided);
                }
            }
            if !late.is_empty() {
                self.forward_late(&group, late, late_policies, &mut out.forward);
            }
        }
        if let Some(max) = self.settings.max_memory_bytes {
            while self.buffer.memory_bytes() > max && self.buffer.len() > 0 {
                if !self.decide_oldest(DecisionTrigger::MemoryLimit, now, &mut out.decided) {
                    break;
                }
            }
        }
        self.update_gauges();
        out
    }

    /// Decides every trace that is due at `now`: `decision_wait` after its
    /// first span, or `decision_wait_after_root_received` after its root
    /// span. Traces come out earliest-due first. Costs O(traces due).
    pub fn tick(&mut self, now: Timestamp) -> Vec<DecidedTrace> {
        let now = self.advance(now);
        let mut decided = Vec::new();
        while let Some((id, due, trigger)) = self.buffer.pop_due(now) {
            if let Some(d) = self.decide(id, trigger, now, Some(due)) {
                decided.push(d);
            }
        }
        self.update_gauges();
        decided
    }

    /// Shutdown: decides every buffered trace, oldest first, or, with
    /// `drop_pending_traces_on_shutdown`, discards them (counted in
    /// `sampling_trace_dropped_too_early`) and returns nothing.
    pub fn flush_all(&mut self, now: Timestamp) -> Vec<DecidedTrace> {
        let now = self.advance(now);
        let drained = self.buffer.drain();
        let mut decided = Vec::new();
        if self.settings.drop_pending_on_shutdown {
            self.stats.sampling_trace_dropped_too_early += drained.len() as u64;
        } else {
            decided.reserve(drained.len());
            for (id, trace) in drained {
                decided.push(self.decide_trace(id, trace, DecisionTrigger::Shutdown, now, None));
            }
        }
        self.update_gauges();
        decided
    }

    /// Queues the late sampled spans of one group for forwarding under
    /// their resource and scope.
    fn forward_late(
        &mut self,
        group: &EncodedGroup,
        late: Vec<Span>,
        policies: Vec<Option<u32>>,
        forward: &mut Vec<ResourceSpans>,
    ) {
        let header = ResourceSpans::decode(&group.resource[..])
            .and_then(|rs| ScopeSpans::decode(&group.scope[..]).map(|ss| (rs, ss)));
        let Ok((mut rs, mut ss)) = header else {
            self.stats.policy_evaluation_error += late.len() as u64;
            return;
        };
        rs.scope_spans = if self.record_policy {
            self.mark_cached(&ss, late, policies)
        } else {
            ss.spans = late;
            vec![ss]
        };
        forward.push(rs);
    }

    /// Late sampled spans of one scope, split by the policy that sampled
    /// their trace, with the scope attributes otelcol's recordpolicy adds.
    fn mark_cached(
        &self,
        scope_spans: &ScopeSpans,
        spans: Vec<Span>,
        policies: Vec<Option<u32>>,
    ) -> Vec<ScopeSpans> {
        let mut groups: Vec<(Option<u32>, Vec<Span>)> = Vec::new();
        for (span, policy) in spans.into_iter().zip(policies) {
            match groups.iter_mut().find(|(p, _)| *p == policy) {
                Some((_, group)) => group.push(span),
                None => groups.push((policy, vec![span])),
            }
        }
        let names = self.policies.names();
        groups
            .into_iter()
            .map(|(policy, spans)| {
                let mut out = ScopeSpans {
                    scope: scope_spans.scope.clone(),
                    spans,
                    schema_url: scope_spans.schema_url.clone(),
                };
                let scope = out.scope.get_or_insert_with(InstrumentationScope::default);
                if let Some(name) = policy.and_then(|i| names.get(i as usize)) {
                    upsert(
                        &mut scope.attributes,
                        POLICY_ATTRIBUTE,
                        Value::StringValue(name.to_string()),
                    );
                }
                upsert(
                    &mut scope.attributes,
                    CACHED_DECISION_ATTRIBUTE,
                    Value::BoolValue(true),
                );
                out
            })
            .collect()
    }

    fn late_span(&mut self, hit: CachedDecision, now: Timestamp) {
        self.stats
            .late_span_age_secs
            .record(now.saturating_duration_since(hit.decided_at).as_secs());
    }

    fn update_gauges(&mut self) {
        self.stats.traces_on_memory = self.buffer.len() as u64;
        self.stats.spans_on_memory = self.buffer.span_count();
        self.stats.bytes_on_memory = self.buffer.memory_bytes();
    }

    /// Decides the oldest buffered trace; false if there is none.
    fn decide_oldest(
        &mut self,
        trigger: DecisionTrigger,
        now: Timestamp,
        out: &mut Vec<DecidedTrace>,
    ) -> bool {
        let Some(id) = self.buffer.oldest() else {
            return false;
        };
        match self.decide(id, trigger, now, None) {
            Some(d) => {
                out.push(d);
                true
            }
            None => false,
        }
    }

    fn decide(
        &mut self,
        id: TraceId,
        trigger: DecisionTrigger,
        now: Timestamp,
        due: Option<Timestamp>,
    ) -> Option<DecidedTrace> {
        let trace = self.buffer.take(&id)?;
        Some(self.decide_trace(id, trace, trigger, now, due))
    }

    fn decide_trace(
        &mut self,
        id: TraceId,
        trace: BufferedTrace,
        trigger: DecisionTrigger,
        now: Timestamp,
        due: Option<Timestamp>,
    ) -> DecidedTrace {
        if let Some(due) = due {
            let late = now.saturating_duration_since(due).as_millis();
            self.stats
                .decision_lateness_ms
                .record(u64::try_from(late).unwrap_or(u64::MAX));
        }
        let materialized = trace.materialize();
        let first_seen = trace.first_seen;
        let span_count = trace.span_count;
        let (decision, policy_indexes, mut batches) = match materialized {
            Ok(batches) => {
                let view = TraceView {
                    trace_id: &id,
                    batches: &batches,
                    span_count: trace.span_count,
                    size_bytes: trace.encoded_size,
                    now,
                };
                let verdict = self.policies.decide(&view, &mut self.stats);
                (verdict.decision, verdict.policies, batches)
            }
            Err(_) => {
                // Cannot happen for bytes the receiver's scanner accepted or
                // prost wrote; never panic, never keep.
                self.stats.policy_evaluation_error += 1;
                (FinalDecision::NotSampled, Vec::new(), Vec::new())
            }
        };
        self.stats.record_final(decision, trigger);
        let names = self.policies.names();
        let policies: Vec<Arc<str>> = policy_indexes
            .iter()
            .filter_map(|&i| names.get(i).cloned())
            .collect();
        let sampled = decision.is_sampled();
        let mut encoded = None;
        if sampled {
            let first = policy_indexes.first().and_then(|&i| u32::try_from(i).ok());
            self.sampled.insert(
                id,
                CachedDecision {
                    decided_at: now,
                    policy: first,
                },
            );
            if !self.record_policy {
                encoded = Some(trace.into_groups());
            } else if let Some(name) = policies.first() {
                for rs in &mut batches {
                    for ss in &mut rs.scope_spans {
                        let scope = ss.scope.get_or_insert_with(InstrumentationScope::default);
                        upsert(
                            &mut scope.attributes,
                            POLICY_ATTRIBUTE,
                            Value::StringValue(name.to_string()),
                        );
                    }
                }
            }
        } else {
            self.not_sampled.insert(
                id,
                CachedDecision {
                    decided_at: now,
                    policy: None,
                },
            );
            batches = Vec::new();
        }
        DecidedTrace {
            trace_id: id,
            sampled,
            decision,
            policies,
            trigger,
            first_seen,
            span_count,
            resource_spans: batches,
            encoded,
        }
    }
}

/// Sets `key` to `value`, replacing an existing attribute of that key.
fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    let value = Some(AnyValue { value: Some(value) });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attrs.push(KeyValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;
