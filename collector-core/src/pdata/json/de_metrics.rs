//! [`Message`] implementations for the metrics types.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, metric, number_data_point,
};
use serde::de::MapAccess;

use super::de::{Ctx, Message, msg, msgs, opt_scalar, scalar, scalars, skip};
use super::de_scalar::{Bool, Enum, F64, Hex, I32, I64, Str, U32, U64};

fn temporality(name: &str) -> Option<i32> {
    AggregationTemporality::from_str_name(name).map(|t| t as i32)
}

impl Message for ExportMetricsServiceRequest {
    const FIELDS: &'static [&'static str] = &["resourceMetrics"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resourceMetrics" => self.resource_metrics = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ResourceMetrics {
    const FIELDS: &'static [&'static str] = &["resource", "scopeMetrics", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "resource" => self.resource = msg(m, c)?,
            "scopeMetrics" => self.scope_metrics = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ScopeMetrics {
    const FIELDS: &'static [&'static str] = &["scope", "metrics", "schemaUrl"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "scope" => self.scope = msg(m, c)?,
            "metrics" => self.metrics = msgs(m, c)?,
            "schemaUrl" => self.schema_url = scalar(m, Str)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Metric {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "description",
        "unit",
        "metadata",
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        use metric::Data;
        // `data` is a oneof: `null` leaves it unset, the last non-null wins.
        let data = match name {
            "name" => {
                self.name = scalar(m, Str)?;
                return Ok(());
            }
            "description" => {
                self.description = scalar(m, Str)?;
                return Ok(());
            }
            "unit" => {
                self.unit = scalar(m, Str)?;
                return Ok(());
            }
            "metadata" => {
                self.metadata = msgs(m, c)?;
                return Ok(());
            }
            "gauge" => msg(m, c)?.map(Data::Gauge),
            "sum" => msg(m, c)?.map(Data::Sum),
            "histogram" => msg(m, c)?.map(Data::Histogram),
            "exponentialHistogram" => msg(m, c)?.map(Data::ExponentialHistogram),
            "summary" => msg(m, c)?.map(Data::Summary),
            _ => return skip(m),
        };
        if data.is_some() {
            self.data = data;
        }
        Ok(())
    }
}

impl Message for Gauge {
    const FIELDS: &'static [&'static str] = &["dataPoints"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "dataPoints" => self.data_points = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Sum {
    const FIELDS: &'static [&'static str] =
        &["dataPoints", "aggregationTemporality", "isMonotonic"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "dataPoints" => self.data_points = msgs(m, c)?,
            "aggregationTemporality" => {
                self.aggregation_temporality = scalar(m, Enum(temporality))?;
            }
            "isMonotonic" => self.is_monotonic = scalar(m, Bool)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Histogram {
    const FIELDS: &'static [&'static str] = &["dataPoints", "aggregationTemporality"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "dataPoints" => self.data_points = msgs(m, c)?,
            "aggregationTemporality" => {
                self.aggregation_temporality = scalar(m, Enum(temporality))?;
            }
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ExponentialHistogram {
    const FIELDS: &'static [&'static str] = &["dataPoints", "aggregationTemporality"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "dataPoints" => self.data_points = msgs(m, c)?,
            "aggregationTemporality" => {
                self.aggregation_temporality = scalar(m, Enum(temporality))?;
            }
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Summary {
    const FIELDS: &'static [&'static str] = &["dataPoints"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "dataPoints" => self.data_points = msgs(m, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for NumberDataPoint {
    const FIELDS: &'static [&'static str] = &[
        "attributes",
        "startTimeUnixNano",
        "timeUnixNano",
        "asDouble",
        "asInt",
        "exemplars",
        "flags",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        use number_data_point::Value;
        match name {
            "attributes" => self.attributes = msgs(m, c)?,
            "startTimeUnixNano" => self.start_time_unix_nano = scalar(m, U64)?,
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "asDouble" => {
                if let Some(v) = opt_scalar(m, F64)? {
                    self.value = Some(Value::AsDouble(v));
                }
            }
            "asInt" => {
                if let Some(v) = opt_scalar(m, I64)? {
                    self.value = Some(Value::AsInt(v));
                }
            }
            "exemplars" => self.exemplars = msgs(m, c)?,
            "flags" => self.flags = scalar(m, U32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for HistogramDataPoint {
    const FIELDS: &'static [&'static str] = &[
        "attributes",
        "startTimeUnixNano",
        "timeUnixNano",
        "count",
        "sum",
        "bucketCounts",
        "explicitBounds",
        "exemplars",
        "flags",
        "min",
        "max",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "attributes" => self.attributes = msgs(m, c)?,
            "startTimeUnixNano" => self.start_time_unix_nano = scalar(m, U64)?,
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "count" => self.count = scalar(m, U64)?,
            "sum" => self.sum = opt_scalar(m, F64)?,
            "bucketCounts" => self.bucket_counts = scalars(m, U64, c)?,
            "explicitBounds" => self.explicit_bounds = scalars(m, F64, c)?,
            "exemplars" => self.exemplars = msgs(m, c)?,
            "flags" => self.flags = scalar(m, U32)?,
            "min" => self.min = opt_scalar(m, F64)?,
            "max" => self.max = opt_scalar(m, F64)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ExponentialHistogramDataPoint {
    const FIELDS: &'static [&'static str] = &[
        "attributes",
        "startTimeUnixNano",
        "timeUnixNano",
        "count",
        "sum",
        "scale",
        "zeroCount",
        "positive",
        "negative",
        "flags",
        "exemplars",
        "min",
        "max",
        "zeroThreshold",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "attributes" => self.attributes = msgs(m, c)?,
            "startTimeUnixNano" => self.start_time_unix_nano = scalar(m, U64)?,
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "count" => self.count = scalar(m, U64)?,
            "sum" => self.sum = opt_scalar(m, F64)?,
            "scale" => self.scale = scalar(m, I32)?,
            "zeroCount" => self.zero_count = scalar(m, U64)?,
            "positive" => self.positive = msg(m, c)?,
            "negative" => self.negative = msg(m, c)?,
            "flags" => self.flags = scalar(m, U32)?,
            "exemplars" => self.exemplars = msgs(m, c)?,
            "min" => self.min = opt_scalar(m, F64)?,
            "max" => self.max = opt_scalar(m, F64)?,
            "zeroThreshold" => self.zero_threshold = scalar(m, F64)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Buckets {
    const FIELDS: &'static [&'static str] = &["offset", "bucketCounts"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "offset" => self.offset = scalar(m, I32)?,
            "bucketCounts" => self.bucket_counts = scalars(m, U64, c)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for SummaryDataPoint {
    const FIELDS: &'static [&'static str] = &[
        "attributes",
        "startTimeUnixNano",
        "timeUnixNano",
        "count",
        "sum",
        "quantileValues",
        "flags",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "attributes" => self.attributes = msgs(m, c)?,
            "startTimeUnixNano" => self.start_time_unix_nano = scalar(m, U64)?,
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "count" => self.count = scalar(m, U64)?,
            "sum" => self.sum = scalar(m, F64)?,
            "quantileValues" => self.quantile_values = msgs(m, c)?,
            "flags" => self.flags = scalar(m, U32)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for ValueAtQuantile {
    const FIELDS: &'static [&'static str] = &["quantile", "value"];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        _c: &Ctx,
    ) -> Result<(), A::Error> {
        match name {
            "quantile" => self.quantile = scalar(m, F64)?,
            "value" => self.value = scalar(m, F64)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}

impl Message for Exemplar {
    const FIELDS: &'static [&'static str] = &[
        "filteredAttributes",
        "timeUnixNano",
        "asDouble",
        "asInt",
        "spanId",
        "traceId",
    ];

    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        name: &'static str,
        m: &mut A,
        c: &Ctx,
    ) -> Result<(), A::Error> {
        use exemplar::Value;
        match name {
            "filteredAttributes" => self.filtered_attributes = msgs(m, c)?,
            "timeUnixNano" => self.time_unix_nano = scalar(m, U64)?,
            "asDouble" => {
                if let Some(v) = opt_scalar(m, F64)? {
                    self.value = Some(Value::AsDouble(v));
                }
            }
            "asInt" => {
                if let Some(v) = opt_scalar(m, I64)? {
                    self.value = Some(Value::AsInt(v));
                }
            }
            "spanId" => self.span_id = scalar(m, Hex)?,
            "traceId" => self.trace_id = scalar(m, Hex)?,
            _ => skip(m)?,
        }
        Ok(())
    }
}
