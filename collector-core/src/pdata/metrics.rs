//! [`SignalRequest`] for metrics: items are data points, as otelcol counts them.

use super::SignalRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
};

/// Data points of one metric, whatever its type.
pub(crate) fn data_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Moves the first `n` data points of `metric` into a copy of the metric.
fn split_metric(metric: &mut Metric, n: usize) -> Metric {
    let data = match &mut metric.data {
        Some(Data::Gauge(g)) => Some(Data::Gauge(Gauge {
            data_points: g.data_points.drain(..n).collect(),
        })),
        Some(Data::Sum(s)) => Some(Data::Sum(Sum {
            data_points: s.data_points.drain(..n).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        })),
        Some(Data::Histogram(h)) => Some(Data::Histogram(Histogram {
            data_points: h.data_points.drain(..n).collect(),
            aggregation_temporality: h.aggregation_temporality,
        })),
        Some(Data::ExponentialHistogram(h)) => {
            Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            }))
        }
        Some(Data::Summary(s)) => Some(Data::Summary(Summary {
            data_points: s.data_points.drain(..n).collect(),
        })),
        None => None,
    };
    Metric {
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
        metadata: metric.metadata.clone(),
        data,
    }
}

/// Moves the first `n` data points of a scope into a new scope element.
fn split_scope(scope: &mut ScopeMetrics, n: usize) -> ScopeMetrics {
    let mut left = n;
    let mut whole = 0;
    for metric in &scope.metrics {
        let count = data_point_count(metric);
        if count > left {
            break;
        }
        left -= count;
        whole += 1;
    }
    let mut metrics: Vec<Metric> = scope.metrics.drain(..whole).collect();
    if left > 0
        && let Some(metric) = scope.metrics.first_mut()
    {
        metrics.push(split_metric(metric, left));
    }
    ScopeMetrics {
        scope: scope.scope.clone(),
        metrics,
        schema_url: scope.schema_url.clone(),
    }
}

fn scope_count(scope: &ScopeMetrics) -> usize {
    scope.metrics.iter().map(data_point_count).sum()
}

impl SignalRequest for ExportMetricsServiceRequest {
    const SIGNAL: super::Signal = super::Signal::Metrics;
    type Resource = ResourceMetrics;

    fn resources(&self) -> &Vec<ResourceMetrics> {
        &self.resource_metrics
    }
    fn resources_mut(&mut self) -> &mut Vec<ResourceMetrics> {
        &mut self.resource_metrics
    }
    fn from_resources(resource_metrics: Vec<ResourceMetrics>) -> Self {
        Self { resource_metrics }
    }
    fn resource_mut(
        element: &mut ResourceMetrics,
    ) -> &mut Option<opentelemetry_proto::tonic::resource::v1::Resource> {
        &mut element.resource
    }
    fn count_items(resource: &ResourceMetrics) -> usize {
        resource.scope_metrics.iter().map(scope_count).sum()
    }
    fn split_items(resource: &mut ResourceMetrics, n: usize) -> ResourceMetrics {
        let mut left = n;
        let mut whole = 0;
        for scope in &resource.scope_metrics {
            let count = scope_count(scope);
            if count > left {
                break;
            }
            left -= count;
            whole += 1;
        }
        let mut scope_metrics: Vec<ScopeMetrics> = resource.scope_metrics.drain(..whole).collect();
        if left > 0
            && let Some(scope) = resource.scope_metrics.first_mut()
        {
            scope_metrics.push(split_scope(scope, left));
        }
        ResourceMetrics {
            resource: resource.resource.clone(),
            scope_metrics,
            schema_url: resource.schema_url.clone(),
        }
    }
}
