//! [`Encode`] implementations for the metrics types.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, metric, number_data_point,
};

use super::enc::{Encode, Obj, write_f64, write_quoted_int};

impl Encode for ExportMetricsServiceRequest {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("resourceMetrics", &self.resource_metrics);
        o.end();
    }
}

impl Encode for ResourceMetrics {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("resource", self.resource.as_ref());
        o.msgs("scopeMetrics", &self.scope_metrics);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for ScopeMetrics {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msg("scope", self.scope.as_ref());
        o.msgs("metrics", &self.metrics);
        o.str("schemaUrl", &self.schema_url);
        o.end();
    }
}

impl Encode for Metric {
    fn encode(&self, out: &mut String) {
        use metric::Data;
        let mut o = Obj::begin(out);
        o.str("name", &self.name);
        o.str("description", &self.description);
        o.str("unit", &self.unit);
        o.msgs("metadata", &self.metadata);
        match &self.data {
            None => {}
            Some(Data::Gauge(v)) => o.msg("gauge", Some(v)),
            Some(Data::Sum(v)) => o.msg("sum", Some(v)),
            Some(Data::Histogram(v)) => o.msg("histogram", Some(v)),
            Some(Data::ExponentialHistogram(v)) => o.msg("exponentialHistogram", Some(v)),
            Some(Data::Summary(v)) => o.msg("summary", Some(v)),
        }
        o.end();
    }
}

impl Encode for Gauge {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("dataPoints", &self.data_points);
        o.end();
    }
}

impl Encode for Sum {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("dataPoints", &self.data_points);
        o.int("aggregationTemporality", self.aggregation_temporality);
        o.bool("isMonotonic", self.is_monotonic);
        o.end();
    }
}

impl Encode for Histogram {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("dataPoints", &self.data_points);
        o.int("aggregationTemporality", self.aggregation_temporality);
        o.end();
    }
}

impl Encode for ExponentialHistogram {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("dataPoints", &self.data_points);
        o.int("aggregationTemporality", self.aggregation_temporality);
        o.end();
    }
}

impl Encode for Summary {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("dataPoints", &self.data_points);
        o.end();
    }
}

/// Writes the `asDouble`/`asInt` oneof shared by data points and exemplars;
/// a present member is written even when it is 0.
fn value_oneof(o: &mut Obj<'_>, as_double: Option<f64>, as_int: Option<i64>) {
    if let Some(v) = as_double {
        o.key("asDouble");
        write_f64(o.out, v);
    }
    if let Some(v) = as_int {
        o.key("asInt");
        write_quoted_int(o.out, v);
    }
}

impl Encode for NumberDataPoint {
    fn encode(&self, out: &mut String) {
        use number_data_point::Value;
        let mut o = Obj::begin(out);
        o.msgs("attributes", &self.attributes);
        o.int64("startTimeUnixNano", self.start_time_unix_nano);
        o.int64("timeUnixNano", self.time_unix_nano);
        match self.value {
            None => {}
            Some(Value::AsDouble(v)) => value_oneof(&mut o, Some(v), None),
            Some(Value::AsInt(v)) => value_oneof(&mut o, None, Some(v)),
        }
        o.msgs("exemplars", &self.exemplars);
        o.int("flags", self.flags);
        o.end();
    }
}

fn write_u64s(o: &mut Obj<'_>, name: &str, v: &[u64]) {
    o.list(name, v, |out, n| write_quoted_int(out, n));
}

impl Encode for HistogramDataPoint {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("attributes", &self.attributes);
        o.int64("startTimeUnixNano", self.start_time_unix_nano);
        o.int64("timeUnixNano", self.time_unix_nano);
        o.int64("count", self.count);
        o.opt_f64("sum", self.sum);
        write_u64s(&mut o, "bucketCounts", &self.bucket_counts);
        o.list("explicitBounds", &self.explicit_bounds, |out, v| {
            write_f64(out, *v);
        });
        o.msgs("exemplars", &self.exemplars);
        o.int("flags", self.flags);
        o.opt_f64("min", self.min);
        o.opt_f64("max", self.max);
        o.end();
    }
}

impl Encode for ExponentialHistogramDataPoint {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("attributes", &self.attributes);
        o.int64("startTimeUnixNano", self.start_time_unix_nano);
        o.int64("timeUnixNano", self.time_unix_nano);
        o.int64("count", self.count);
        o.opt_f64("sum", self.sum);
        o.int("scale", self.scale);
        o.int64("zeroCount", self.zero_count);
        o.msg("positive", self.positive.as_ref());
        o.msg("negative", self.negative.as_ref());
        o.int("flags", self.flags);
        o.msgs("exemplars", &self.exemplars);
        o.opt_f64("min", self.min);
        o.opt_f64("max", self.max);
        o.f64("zeroThreshold", self.zero_threshold);
        o.end();
    }
}

impl Encode for Buckets {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.int("offset", self.offset);
        write_u64s(&mut o, "bucketCounts", &self.bucket_counts);
        o.end();
    }
}

impl Encode for SummaryDataPoint {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.msgs("attributes", &self.attributes);
        o.int64("startTimeUnixNano", self.start_time_unix_nano);
        o.int64("timeUnixNano", self.time_unix_nano);
        o.int64("count", self.count);
        o.f64("sum", self.sum);
        o.msgs("quantileValues", &self.quantile_values);
        o.int("flags", self.flags);
        o.end();
    }
}

impl Encode for ValueAtQuantile {
    fn encode(&self, out: &mut String) {
        let mut o = Obj::begin(out);
        o.f64("quantile", self.quantile);
        o.f64("value", self.value);
        o.end();
    }
}

impl Encode for Exemplar {
    fn encode(&self, out: &mut String) {
        use exemplar::Value;
        let mut o = Obj::begin(out);
        o.msgs("filteredAttributes", &self.filtered_attributes);
        o.int64("timeUnixNano", self.time_unix_nano);
        match self.value {
            None => {}
            Some(Value::AsDouble(v)) => value_oneof(&mut o, Some(v), None),
            Some(Value::AsInt(v)) => value_oneof(&mut o, None, Some(v)),
        }
        o.hex("spanId", &self.span_id);
        o.hex("traceId", &self.trace_id);
        o.end();
    }
}
