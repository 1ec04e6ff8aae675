//! Splitting metrics: by resource, by metric, or by data point (`streamID`,
//! `attributes`), cutting a metric whose points go to several backends into
//! one metric per backend.

use super::{
    KeyBuf, distribute, resource_attributes, scope_key, service_name, single_owner,
    write_attributes, write_routing_attributes,
};
use crate::loadbalancing::config::RoutingKey;
use collector_core::pdata::Metrics;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, Sum, Summary, metric,
};

/// The attributes of each data point of a metric, in order.
fn point_attributes(metric: &Metric) -> Vec<&[KeyValue]> {
    match &metric.data {
        None => Vec::new(),
        Some(metric::Data::Gauge(g)) => g
            .data_points
            .iter()
            .map(|p| p.attributes.as_slice())
            .collect(),
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| p.attributes.as_slice())
            .collect(),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| p.attributes.as_slice())
            .collect(),
        Some(metric::Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .map(|p| p.attributes.as_slice())
            .collect(),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .iter()
            .map(|p| p.attributes.as_slice())
            .collect(),
    }
}

/// Takes points out of `points` by owner, keeping their order.
fn take_points<P>(points: &mut Vec<P>, owners: &[usize], owner: usize) -> Vec<P> {
    let all = std::mem::take(points);
    let mut mine = Vec::new();
    for (point, o) in all.into_iter().zip(owners) {
        if *o == owner {
            mine.push(point);
        } else {
            points.push(point);
        }
    }
    mine
}

/// Cuts a metric into one metric per owner of its points (`owners` in point
/// order), each with the metric's name, unit and type.
fn cut_metric(mut metric: Metric, owners: &[usize]) -> Vec<(usize, Metric)> {
    let mut distinct: Vec<usize> = owners.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let Some(mut data) = metric.data.take() else {
        return vec![(distinct.first().copied().unwrap_or(0), metric)];
    };
    let mut parts = Vec::with_capacity(distinct.len());
    // Each owner takes its points from what is left, so the indexes shift:
    // keep the owners of the points that are left alongside.
    let mut left_owners = owners.to_vec();
    for owner in distinct {
        let piece = match &mut data {
            metric::Data::Gauge(g) => {
                let points = take_points(&mut g.data_points, &left_owners, owner);
                metric::Data::Gauge(Gauge {
                    data_points: points,
                })
            }
            metric::Data::Sum(s) => {
                let points = take_points(&mut s.data_points, &left_owners, owner);
                metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: s.aggregation_temporality,
                    is_monotonic: s.is_monotonic,
                })
            }
            metric::Data::Histogram(h) => {
                let points = take_points(&mut h.data_points, &left_owners, owner);
                metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: h.aggregation_temporality,
                })
            }
            metric::Data::ExponentialHistogram(h) => {
                let points = take_points(&mut h.data_points, &left_owners, owner);
                metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: points,
                    aggregation_temporality: h.aggregation_temporality,
                })
            }
            metric::Data::Summary(s) => {
                let points = take_points(&mut s.data_points, &left_owners, owner);
                metric::Data::Summary(Summary {
                    data_points: points,
                })
            }
        };
        left_owners.retain(|o| *o != owner);
        let mut part = metric.clone();
        part.data = Some(piece);
        parts.push((owner, part));
    }
    parts
}

pub(super) fn split_metrics(
    mut batch: Metrics,
    key: RoutingKey,
    names: &[String],
    owner: &mut dyn FnMut(&[u8]) -> usize,
) -> Vec<(usize, Metrics)> {
    let per_point = matches!(key, RoutingKey::StreamId | RoutingKey::Attributes);
    // Owners of every data point (per_point) or of every metric.
    let mut owners = Vec::new();
    let mut buf = KeyBuf::default();
    for resource in batch.resources() {
        let attrs = resource_attributes(resource.resource.as_ref());
        let per_resource = match key {
            RoutingKey::Resource => {
                let out = buf.clear();
                write_attributes(out, attrs);
                Some(owner(out))
            }
            RoutingKey::Service | RoutingKey::TraceId => {
                Some(owner(service_name(resource.resource.as_ref()).as_bytes()))
            }
            _ => None,
        };
        for scope in &resource.scope_metrics {
            for m in &scope.metrics {
                match per_resource {
                    Some(o) => owners.push(o),
                    None if key == RoutingKey::Metric => owners.push(owner(m.name.as_bytes())),
                    None => {
                        for point in point_attributes(m) {
                            let out = buf.clear();
                            let o = if key == RoutingKey::StreamId {
                                write_attributes(out, attrs);
                                out.push(1);
                                scope_key(out, scope.scope.as_ref());
                                out.extend_from_slice(m.name.as_bytes());
                                out.push(1);
                                write_attributes(out, point);
                                owner(out)
                            } else if write_routing_attributes(out, names, attrs, point, &|_| None)
                            {
                                owner(out)
                            } else {
                                owner(service_name(resource.resource.as_ref()).as_bytes())
                            };
                            owners.push(o);
                        }
                    }
                }
            }
        }
    }
    if let Some(only) = single_owner(&owners) {
        return vec![(only, batch)];
    }
    if per_point {
        // Cut metrics whose points go to several owners; then one owner per metric.
        let mut metric_owners = Vec::new();
        let mut next = 0;
        batch.modify(|resources| {
            for resource in resources.iter_mut() {
                for scope in &mut resource.scope_metrics {
                    let mut cut = Vec::with_capacity(scope.metrics.len());
                    for m in std::mem::take(&mut scope.metrics) {
                        let n = point_attributes(&m).len();
                        let mine = &owners[next..next + n];
                        next += n;
                        match single_owner(mine) {
                            Some(o) => {
                                metric_owners.push(o);
                                cut.push(m);
                            }
                            None => {
                                for (o, part) in cut_metric(m, mine) {
                                    metric_owners.push(o);
                                    cut.push(part);
                                }
                            }
                        }
                    }
                    scope.metrics = cut;
                }
            }
        });
        owners = metric_owners;
    }
    distribute(batch.into_request(), &owners)
        .into_iter()
        .map(|(o, r)| (o, Metrics::new(r)))
        .collect()
}
