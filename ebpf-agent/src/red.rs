//! RED metrics from the spans: `http.server.request.duration` and
//! `http.client.request.duration` histograms per process, method, route
//! (server), peer (client) and status, exported as cumulative OTLP
//! histograms.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use std::collections::{BTreeMap, HashMap};

/// Bucket bounds the semantic conventions advise for HTTP durations (s).
const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Span attributes that become metric attributes, per kind.
const SERVER_KEYS: &[&str] = &[
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "url.scheme",
    "network.protocol.version",
];
const CLIENT_KEYS: &[&str] = &[
    "http.request.method",
    "server.address",
    "server.port",
    "http.response.status_code",
    "network.protocol.version",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    pid: u32,
    server: bool,
    /// (key, value rendered) in the order of the key list.
    attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Series {
    attributes: Vec<KeyValue>,
    start_unix_nano: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: [u64; BOUNDS.len() + 1],
}

/// Cumulative histograms of request durations.
#[derive(Debug)]
pub(crate) struct RedMetrics {
    series: BTreeMap<SeriesKey, Series>,
    max_series: usize,
    /// Observations not recorded because `max_series` was reached.
    pub(crate) dropped: u64,
}

fn render(value: &any_value::Value) -> String {
    match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

impl RedMetrics {
    /// Empty, keeping at most `max_series` series (method x route x status
    /// per process; a bound so odd paths cannot grow memory without end).
    pub(crate) fn new(max_series: usize) -> Self {
        RedMetrics {
            series: BTreeMap::new(),
            max_series,
            dropped: 0,
        }
    }

    /// Adds one span's duration.
    pub(crate) fn record(&mut self, pid: u32, span: &Span) {
        let server = match SpanKind::try_from(span.kind) {
            Ok(SpanKind::Server) => true,
            Ok(SpanKind::Client) => false,
            _ => return,
        };
        let keys = if server { SERVER_KEYS } else { CLIENT_KEYS };
        let mut attributes: Vec<KeyValue> = keys
            .iter()
            .filter_map(|k| span.attributes.iter().find(|a| a.key == *k).cloned())
            .collect();
        let failed = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        if failed {
            let error_type = attributes
                .iter()
                .find(|a| a.key == "http.response.status_code")
                .and_then(|a| a.value.as_ref()?.value.as_ref().map(render))
                .unwrap_or_else(|| "no_response".to_string());
            attributes.push(crate::attributes::string("error.type", error_type));
        }
        let key = SeriesKey {
            pid,
            server,
            attributes: attributes
                .iter()
                .map(|a| {
                    (
                        a.key.clone(),
                        a.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(render)
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        };
        let seconds = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano) as f64
            / 1e9;
        if !self.series.contains_key(&key) && self.series.len() >= self.max_series {
            self.dropped += 1;
            return;
        }
        let series = self.series.entry(key).or_insert_with(|| Series {
            attributes,
            start_unix_nano: span.start_time_unix_nano,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            buckets: [0; BOUNDS.len() + 1],
        });
        series.count += 1;
        series.sum += seconds;
        series.min = series.min.min(seconds);
        series.max = series.max.max(seconds);
        let bucket = BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BOUNDS.len());
        series.buckets[bucket] += 1;
    }

    /// Forgets an exited process's series.
    pub(crate) fn forget_process(&mut self, pid: u32) {
        self.series.retain(|k, _| k.pid != pid);
    }

    /// Processes with series.
    pub(crate) fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        let mut last = None;
        self.series.keys().filter_map(move |k| {
            if last == Some(k.pid) {
                return None;
            }
            last = Some(k.pid);
            Some(k.pid)
        })
    }

    /// Number of series held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// The cumulative state as an export request, one resource per process
    /// `resource_of` knows.
    pub(crate) fn export(
        &self,
        now_unix_nano: u64,
        mut resource_of: impl FnMut(u32) -> Option<Resource>,
    ) -> ExportMetricsServiceRequest {
        let mut per_pid: HashMap<u32, (Vec<HistogramDataPoint>, Vec<HistogramDataPoint>)> =
            HashMap::new();
        for (key, series) in &self.series {
            let point = HistogramDataPoint {
                attributes: series.attributes.clone(),
                start_time_unix_nano: series.start_unix_nano,
                time_unix_nano: now_unix_nano,
                count: series.count,
                sum: Some(series.sum),
                bucket_counts: series.buckets.to_vec(),
                explicit_bounds: BOUNDS.to_vec(),
                min: Some(series.min),
                max: Some(series.max),
                ..Default::default()
            };
            let entry = per_pid.entry(key.pid).or_default();
            if key.server {
                entry.0.push(point);
            } else {
                entry.1.push(point);
            }
        }
        let histogram = |name: &str, description: &str, points: Vec<HistogramDataPoint>| Metric {
            name: name.to_string(),
            description: description.to_string(),
            unit: "s".to_string(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let mut pids: Vec<u32> = per_pid.keys().copied().collect();
        pids.sort_unstable();
        let resource_metrics = pids
            .into_iter()
            .filter_map(|pid| {
                let resource = resource_of(pid)?;
                let (server, client) = per_pid.remove(&pid)?;
                let mut metrics = Vec::new();
                if !server.is_empty() {
                    metrics.push(histogram(
                        "http.server.request.duration",
                        "Duration of HTTP server requests.",
                        server,
                    ));
                }
                if !client.is_empty() {
                    metrics.push(histogram(
                        "http.client.request.duration",
                        "Duration of HTTP client requests.",
                        client,
                    ));
                }
                Some(ResourceMetrics {
                    resource: Some(resource),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: crate::SCOPE_NAME.to_string(),
                            version: env!("CARGO_PKG_VERSION").to_string(),
                            ..Default::default()
                        }),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            })
            .collect();
        ExportMetricsServiceRequest { resource_metrics }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn span(kind: SpanKind, status: Option<i64>, millis: u64, route: &str) -> Span {
        let mut attributes = vec![
            crate::attributes::string("http.request.method", "GET"),
            crate::attributes::string("http.route", route),
        ];
        if let Some(code) = status {
            attributes.push(crate::attributes::int("http.response.status_code", code));
        }
        Span {
            kind: kind as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + millis * 1_000_000,
            attributes,
            status: Some(Status {
                code: if status.is_none_or(|c| c >= 500) {
                    StatusCode::Error as i32
                } else {
                    0
                },
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn histograms_per_route_and_status() {
        let mut red = RedMetrics::new(100);
        red.record(1, &span(SpanKind::Server, Some(200), 3, "/a"));
        red.record(1, &span(SpanKind::Server, Some(200), 30, "/a"));
        red.record(1, &span(SpanKind::Server, Some(500), 300, "/a"));
        red.record(1, &span(SpanKind::Server, None, 1, "/b"));
        red.record(1, &span(SpanKind::Internal, Some(200), 1, "/c"));
        let request = red.export(5, |_| Some(Resource::default()));
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].name, "http.server.request.duration");
        let Some(metric::Data::Histogram(h)) = &metrics[0].data else {
            panic!("histogram");
        };
        assert_eq!(h.data_points.len(), 3, "/a 200, /a 500, /b no response");
        let ok = h
            .data_points
            .iter()
            .find(|p| p.count == 2)
            .expect("the 200 series");
        assert_eq!(ok.bucket_counts[0], 1, "3 ms <= 5 ms");
        assert_eq!(ok.bucket_counts[3], 1, "30 ms in (25, 50] ms");
        assert!((ok.sum.expect("sum") - 0.033).abs() < 1e-9);
        let errors: Vec<_> = h
            .data_points
            .iter()
            .flat_map(|p| p.attributes.iter())
            .filter(|a| a.key == "error.type")
            .collect();
        assert_eq!(errors.len(), 2, "500 and no response carry error.type");
        red.forget_process(1);
        assert_eq!(red.len(), 0);
    }

    #[test]
    fn series_are_bounded() {
        let mut red = RedMetrics::new(2);
        for i in 0..5 {
            red.record(1, &span(SpanKind::Server, Some(200), 1, &format!("/r{i}")));
        }
        assert_eq!(red.len(), 2);
        assert_eq!(red.dropped, 3);
    }
}
