//! [`SignalRequest`] for logs: items are log records.

use super::SignalRequest;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

impl SignalRequest for ExportLogsServiceRequest {
    const SIGNAL: super::Signal = super::Signal::Logs;
    type Resource = ResourceLogs;

    fn resources(&self) -> &Vec<ResourceLogs> {
        &self.resource_logs
    }
    fn resources_mut(&mut self) -> &mut Vec<ResourceLogs> {
        &mut self.resource_logs
    }
    fn from_resources(resource_logs: Vec<ResourceLogs>) -> Self {
        Self { resource_logs }
    }
    fn resource_mut(
        element: &mut ResourceLogs,
    ) -> &mut Option<opentelemetry_proto::tonic::resource::v1::Resource> {
        &mut element.resource
    }
    fn count_items(resource: &ResourceLogs) -> usize {
        resource
            .scope_logs
            .iter()
            .map(|s| s.log_records.len())
            .sum()
    }
    fn split_items(resource: &mut ResourceLogs, n: usize) -> ResourceLogs {
        let mut front = ResourceLogs {
            resource: resource.resource.clone(),
            scope_logs: Vec::new(),
            schema_url: resource.schema_url.clone(),
        };
        let mut left = n;
        let mut whole = 0;
        for scope in &resource.scope_logs {
            if scope.log_records.len() > left {
                break;
            }
            left -= scope.log_records.len();
            whole += 1;
        }
        front.scope_logs.extend(resource.scope_logs.drain(..whole));
        if left > 0
            && let Some(scope) = resource.scope_logs.first_mut()
        {
            front.scope_logs.push(ScopeLogs {
                scope: scope.scope.clone(),
                log_records: scope.log_records.drain(..left).collect(),
                schema_url: scope.schema_url.clone(),
            });
        }
        front
    }
}
