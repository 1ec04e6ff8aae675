//! Splitting a request by trace ID into one part per shard, keeping each
//! span under its resource and scope; and merging decided traces back into
//! few resources for delivery.

use std::mem;

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// The shard (of `shards`) that owns a trace ID.
///
/// A 64-bit mix of the ID's bytes (splitmix64's finaliser), mapped onto the
/// shards by multiply-shift, so that it is independent of both the
/// `probabilistic` policy's FNV hash and the load-balancing exporter's CRC-32:
/// the traces one gateway receives still spread evenly over its shards.
pub(crate) fn shard_of(trace_id: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    let (a, b) = trace_id.split_at(trace_id.len().min(8));
    lo[..a.len()].copy_from_slice(a);
    let b = &b[..b.len().min(8)];
    hi[..b.len()].copy_from_slice(b);
    let mut z = u64::from_le_bytes(lo) ^ u64::from_le_bytes(hi).rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let index = (u128::from(z) * shards as u128) >> 64;
    usize::try_from(index).unwrap_or(0)
}

/// A request split by shard.
#[derive(Debug)]
pub(crate) struct Split {
    /// One list of resources per shard (empty for shards with no span).
    pub(crate) parts: Vec<Vec<ResourceSpans>>,
    /// Spans per shard.
    pub(crate) spans: Vec<usize>,
}

/// Splits `resource_spans` into `shards` parts by trace ID. A scope whose
/// spans all go to one shard moves there whole, as does a resource whose
/// scopes do; otherwise the resource and scope are copied into each part.
/// Resources and scopes without spans are left out.
pub(crate) fn split_by_trace(resource_spans: Vec<ResourceSpans>, shards: usize) -> Split {
    let shards = shards.max(1);
    let mut parts: Vec<Vec<ResourceSpans>> = (0..shards).map(|_| Vec::new()).collect();
    let mut spans = vec![0usize; shards];
    // Reused across resources and scopes.
    let mut scopes_by_shard: Vec<Vec<ScopeSpans>> = (0..shards).map(|_| Vec::new()).collect();
    let mut owners: Vec<usize> = Vec::new();
    for mut rs in resource_spans {
        for mut ss in mem::take(&mut rs.scope_spans) {
            if ss.spans.is_empty() {
                continue;
            }
            owners.clear();
            owners.extend(ss.spans.iter().map(|s| shard_of(&s.trace_id, shards)));
            let first = owners[0];
            if owners.iter().all(|&o| o == first) {
                spans[first] += ss.spans.len();
                scopes_by_shard[first].push(ss);
                continue;
            }
            let mut groups: Vec<Vec<Span>> = (0..shards).map(|_| Vec::new()).collect();
            for (span, &owner) in mem::take(&mut ss.spans).into_iter().zip(&owners) {
                groups[owner].push(span);
            }
            for (owner, group) in groups.into_iter().enumerate() {
                if group.is_empty() {
                    continue;
                }
                spans[owner] += group.len();
                scopes_by_shard[owner].push(ScopeSpans {
                    scope: ss.scope.clone(),
                    spans: group,
                    schema_url: ss.schema_url.clone(),
                });
            }
        }
        let used: Vec<usize> = (0..shards)
            .filter(|&s| !scopes_by_shard[s].is_empty())
            .collect();
        let mut original = Some(rs);
        for (k, &owner) in used.iter().enumerate() {
            let scope_spans = mem::take(&mut scopes_by_shard[owner]);
            let mut out = if k + 1 == used.len() {
                original.take().unwrap_or_default()
            } else {
                original
                    .as_ref()
                    .map_or_else(ResourceSpans::default, |rs| ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    })
            };
            out.scope_spans = scope_spans;
            parts[owner].push(out);
        }
    }
    Split { parts, spans }
}

/// How many distinct resources [`ResourceMerger`] compares a new one with.
const MERGE_WINDOW: usize = 16;

/// Builds one request out of many decided traces, putting the spans of
/// traces from the same resource and scope under one entry (the engine
/// returns each trace with its own copy of them), so that what goes
/// downstream does not repeat a resource per trace.
#[derive(Debug, Default)]
pub(crate) struct ResourceMerger {
    out: Vec<ResourceSpans>,
    spans: usize,
}

impl ResourceMerger {
    /// Adds resources with their spans.
    pub(crate) fn add(&mut self, batch: Vec<ResourceSpans>) {
        for rs in batch {
            self.add_one(rs);
        }
    }

    fn add_one(&mut self, mut rs: ResourceSpans) {
        let start = self.out.len().saturating_sub(MERGE_WINDOW);
        let same = self.out[start..].iter_mut().rev().find(|existing| {
            existing.schema_url == rs.schema_url && existing.resource == rs.resource
        });
        let Some(existing) = same else {
            self.spans += count_spans(&rs);
            self.out.push(rs);
            return;
        };
        for ss in mem::take(&mut rs.scope_spans) {
            self.spans += ss.spans.len();
            let scope = existing
                .scope_spans
                .iter_mut()
                .rev()
                .take(MERGE_WINDOW)
                .find(|e| e.schema_url == ss.schema_url && e.scope == ss.scope);
            match scope {
                Some(scope) => scope.spans.extend(ss.spans),
                None => existing.scope_spans.push(ss),
            }
        }
    }

    /// Spans added so far.
    pub(crate) fn spans(&self) -> usize {
        self.spans
    }

    /// The merged resources, leaving the merger empty.
    pub(crate) fn take(&mut self) -> (Vec<ResourceSpans>, usize) {
        (mem::take(&mut self.out), mem::take(&mut self.spans))
    }
}

/// Spans under a resource.
pub(crate) fn count_spans(rs: &ResourceSpans) -> usize {
    rs.scope_spans.iter().map(|ss| ss.spans.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn span(trace: u64, name: &str) -> Span {
        let mut id = vec![0u8; 16];
        id[8..].copy_from_slice(&trace.to_be_bytes());
        Span {
            trace_id: id,
            span_id: vec![1; 8],
            name: name.into(),
            ..Default::default()
        }
    }

    fn scope(name: &str, spans: Vec<Span>) -> ScopeSpans {
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            spans,
            schema_url: "s".into(),
        }
    }

    #[test]
    fn shards_spread_trace_ids_evenly() {
        let mut counts = [0usize; 4];
        for t in 0..40_000u64 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&t.to_be_bytes());
            counts[shard_of(&id, 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(&[7; 16], 1), 0);
        assert!(shard_of(&[], 3) < 3);
        assert!(shard_of(&[1, 2, 3], 3) < 3);
    }

    #[test]
    fn every_span_lands_in_its_traces_shard_under_its_resource_and_scope() {
        let batch = vec![
            ResourceSpans {
                resource: resource("a"),
                scope_spans: vec![
                    scope("s1", (0..20).map(|t| span(t, &format!("a-{t}"))).collect()),
                    scope("empty", Vec::new()),
                ],
                schema_url: "r".into(),
            },
            ResourceSpans {
                resource: resource("b"),
                scope_spans: vec![scope("s2", vec![span(3, "b-3")])],
                schema_url: String::new(),
            },
        ];
        let split = split_by_trace(batch, 3);
        assert_eq!(split.spans.iter().sum::<usize>(), 21);
        let mut seen = 0;
        for (owner, part) in split.parts.iter().enumerate() {
            assert_eq!(
                part.iter().map(count_spans).sum::<usize>(),
                split.spans[owner]
            );
            for rs in part {
                let service = match &rs.resource.as_ref().unwrap().attributes[0].value {
                    Some(AnyValue {
                        value: Some(Value::StringValue(s)),
                    }) => s.clone(),
                    other => panic!("{other:?}"),
                };
                for ss in &rs.scope_spans {
                    assert!(!ss.spans.is_empty());
                    let scope = &ss.scope.as_ref().unwrap().name;
                    for s in &ss.spans {
                        assert_eq!(shard_of(&s.trace_id, 3), owner);
                        assert!(s.name.starts_with(&service), "{} under {service}", s.name);
                        assert_eq!(scope, if service == "a" { "s1" } else { "s2" });
                        seen += 1;
                    }
                }
                if service == "a" {
                    assert_eq!(rs.schema_url, "r");
                }
            }
        }
        assert_eq!(seen, 21);
        // One shard: nothing is split.
        let one = split_by_trace(vec![ResourceSpans::default()], 1);
        assert_eq!(one.spans, vec![0]);
    }

    #[test]
    fn merger_groups_traces_of_the_same_resource_and_scope() {
        let trace = |service: &str, scope_name: &str, t: u64| {
            vec![ResourceSpans {
                resource: resource(service),
                scope_spans: vec![scope(scope_name, vec![span(t, "x"), span(t, "y")])],
                schema_url: String::new(),
            }]
        };
        let mut merger = ResourceMerger::default();
        merger.add(trace("a", "s", 1));
        merger.add(trace("b", "s", 2));
        merger.add(trace("a", "s", 3));
        merger.add(trace("a", "t", 4));
        assert_eq!(merger.spans(), 8);
        let (out, spans) = merger.take();
        assert_eq!(spans, 8);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].scope_spans.len(), 2);
        assert_eq!(out[0].scope_spans[0].spans.len(), 4);
        assert_eq!(out[1].scope_spans[0].spans.len(), 2);
        assert_eq!(merger.spans(), 0);
    }
}
