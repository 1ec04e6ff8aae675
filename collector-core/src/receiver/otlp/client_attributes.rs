//! Resource attributes that describe the sender (`add_client_address`,
//! `add_user_agent`): who sent a browser's telemetry is only known to the
//! collector that took the request. Both are personal data, so each is
//! opt-in.

use crate::pdata::{Payload, SignalRequest};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The attributes to set on every resource of a request.
#[derive(Debug, Default)]
pub(crate) struct ClientAttributes(Vec<KeyValue>);

impl ClientAttributes {
    /// `client.address` and/or `user_agent.original`, when known.
    pub(crate) fn new(client_address: Option<String>, user_agent: Option<String>) -> Self {
        let pairs = [
            ("client.address", client_address),
            ("user_agent.original", user_agent),
        ];
        Self(
            pairs
                .into_iter()
                .filter_map(|(key, value)| {
                    Some(KeyValue {
                        key: key.to_string(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(value?)),
                        }),
                        ..Default::default()
                    })
                })
                .collect(),
        )
    }

    /// Sets the attributes on every resource, replacing what the sender
    /// wrote under the same keys: the collector saw the request, the sender
    /// only says what it likes.
    pub(crate) fn apply(&self, payload: &mut Payload) {
        if self.0.is_empty() || payload.item_count() == 0 {
            return;
        }
        match payload {
            Payload::Traces(b) => b.modify(|r| self.set_all::<ExportTraceServiceRequest>(r)),
            Payload::Metrics(b) => b.modify(|r| self.set_all::<ExportMetricsServiceRequest>(r)),
            Payload::Logs(b) => b.modify(|r| self.set_all::<ExportLogsServiceRequest>(r)),
        }
    }

    fn set_all<R: SignalRequest>(&self, resources: &mut [R::Resource]) {
        for element in resources {
            let attributes = &mut R::resource_mut(element)
                .get_or_insert_with(Resource::default)
                .attributes;
            for kv in &self.0 {
                match attributes.iter_mut().find(|a| a.key == kv.key) {
                    Some(existing) => existing.value.clone_from(&kv.value),
                    None => attributes.push(kv.clone()),
                }
            }
        }
    }
}
