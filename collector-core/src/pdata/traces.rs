//! [`SignalRequest`] for traces: items are spans.

use super::SignalRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

impl SignalRequest for ExportTraceServiceRequest {
    const SIGNAL: super::Signal = super::Signal::Traces;
    type Resource = ResourceSpans;

    fn resources(&self) -> &Vec<ResourceSpans> {
        &self.resource_spans
    }
    fn resources_mut(&mut self) -> &mut Vec<ResourceSpans> {
        &mut self.resource_spans
    }
    fn from_resources(resource_spans: Vec<ResourceSpans>) -> Self {
        Self { resource_spans }
    }
    fn resource_mut(
        element: &mut ResourceSpans,
    ) -> &mut Option<opentelemetry_proto::tonic::resource::v1::Resource> {
        &mut element.resource
    }
    fn count_items(resource: &ResourceSpans) -> usize {
        resource.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    fn split_items(resource: &mut ResourceSpans, n: usize) -> ResourceSpans {
        let mut front = ResourceSpans {
            resource: resource.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: resource.schema_url.clone(),
        };
        let mut left = n;
        let mut whole = 0;
        for scope in &resource.scope_spans {
            if scope.spans.len() > left {
                break;
            }
            left -= scope.spans.len();
            whole += 1;
        }
        front
            .scope_spans
            .extend(resource.scope_spans.drain(..whole));
        if left > 0
            && let Some(scope) = resource.scope_spans.first_mut()
        {
            front.scope_spans.push(ScopeSpans {
                scope: scope.scope.clone(),
                spans: scope.spans.drain(..left).collect(),
                schema_url: scope.schema_url.clone(),
            });
        }
        front
    }
}
