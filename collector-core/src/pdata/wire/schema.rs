//! The OTLP messages as field tables (tags from opentelemetry-proto's
//! generated code; `collector/trace`, `metrics` and `logs` v1).

use super::{Ids, Kind, Schema};
use Kind::{Bytes, Fixed32, Fixed64, Message, RepeatedFixed64, RepeatedVarint, Str, Varint};

const fn message(fields: &'static [(u32, Kind)]) -> Schema {
    Schema::new(fields, false, Ids::None)
}

const fn item(fields: &'static [(u32, Kind)], ids: Ids) -> Schema {
    Schema::new(fields, true, ids)
}

// common.v1 and resource.v1
static ANY_VALUE: Schema = message(&[
    (1, Str),
    (2, Varint),
    (3, Varint),
    (4, Fixed64),
    (5, Message(&ARRAY_VALUE)),
    (6, Message(&KEY_VALUE_LIST)),
    (7, Bytes),
    (8, Varint),
]);
static ARRAY_VALUE: Schema = message(&[(1, Message(&ANY_VALUE))]);
static KEY_VALUE_LIST: Schema = message(&[(1, Message(&KEY_VALUE))]);
static KEY_VALUE: Schema = message(&[(1, Str), (2, Message(&ANY_VALUE)), (3, Varint)]);
static SCOPE: Schema = message(&[(1, Str), (2, Str), (3, Message(&KEY_VALUE)), (4, Varint)]);
static ENTITY_REF: Schema = message(&[(1, Str), (2, Str), (3, Str), (4, Str)]);
static RESOURCE: Schema = message(&[
    (1, Message(&KEY_VALUE)),
    (2, Varint),
    (3, Message(&ENTITY_REF)),
]);

// trace.v1
static STATUS: Schema = message(&[(2, Str), (3, Varint)]);
static EVENT: Schema = message(&[
    (1, Fixed64),
    (2, Str),
    (3, Message(&KEY_VALUE)),
    (4, Varint),
]);
static LINK: Schema = message(&[
    (1, Bytes),
    (2, Bytes),
    (3, Str),
    (4, Message(&KEY_VALUE)),
    (5, Varint),
    (6, Fixed32),
]);
static SPAN: Schema = item(
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Str),
        (4, Bytes),
        (5, Str),
        (6, Varint),
        (7, Fixed64),
        (8, Fixed64),
        (9, Message(&KEY_VALUE)),
        (10, Varint),
        (11, Message(&EVENT)),
        (12, Varint),
        (13, Message(&LINK)),
        (14, Varint),
        (15, Message(&STATUS)),
        (16, Fixed32),
    ],
    Ids::Span,
);
static SCOPE_SPANS: Schema = message(&[(1, Message(&SCOPE)), (2, Message(&SPAN)), (3, Str)]);
static RESOURCE_SPANS: Schema = message(&[
    (1, Message(&RESOURCE)),
    (2, Message(&SCOPE_SPANS)),
    (3, Str),
]);
/// `ExportTraceServiceRequest`.
pub(crate) static TRACES_REQUEST: Schema = message(&[(1, Message(&RESOURCE_SPANS))]);

// logs.v1
static LOG_RECORD: Schema = item(
    &[
        (1, Fixed64),
        (11, Fixed64),
        (2, Varint),
        (3, Str),
        (5, Message(&ANY_VALUE)),
        (6, Message(&KEY_VALUE)),
        (7, Varint),
        (8, Fixed32),
        (9, Bytes),
        (10, Bytes),
        (12, Str),
    ],
    Ids::LogRecord,
);
static SCOPE_LOGS: Schema = message(&[(1, Message(&SCOPE)), (2, Message(&LOG_RECORD)), (3, Str)]);
static RESOURCE_LOGS: Schema =
    message(&[(1, Message(&RESOURCE)), (2, Message(&SCOPE_LOGS)), (3, Str)]);
/// `ExportLogsServiceRequest`.
pub(crate) static LOGS_REQUEST: Schema = message(&[(1, Message(&RESOURCE_LOGS))]);

// metrics.v1
static EXEMPLAR: Schema = message(&[
    (7, Message(&KEY_VALUE)),
    (2, Fixed64),
    (3, Fixed64),
    (6, Fixed64),
    (4, Bytes),
    (5, Bytes),
]);
static NUMBER_DATA_POINT: Schema = item(
    &[
        (7, Message(&KEY_VALUE)),
        (2, Fixed64),
        (3, Fixed64),
        (4, Fixed64),
        (6, Fixed64),
        (5, Message(&EXEMPLAR)),
        (8, Varint),
    ],
    Ids::None,
);
static HISTOGRAM_DATA_POINT: Schema = item(
    &[
        (9, Message(&KEY_VALUE)),
        (2, Fixed64),
        (3, Fixed64),
        (4, Fixed64),
        (5, Fixed64),
        (6, RepeatedFixed64),
        (7, RepeatedFixed64),
        (8, Message(&EXEMPLAR)),
        (10, Varint),
        (11, Fixed64),
        (12, Fixed64),
    ],
    Ids::None,
);
static BUCKETS: Schema = message(&[(1, Varint), (2, RepeatedVarint)]);
static EXPONENTIAL_HISTOGRAM_DATA_POINT: Schema = item(
    &[
        (1, Message(&KEY_VALUE)),
        (2, Fixed64),
        (3, Fixed64),
        (4, Fixed64),
        (5, Fixed64),
        (6, Varint),
        (7, Fixed64),
        (8, Message(&BUCKETS)),
        (9, Message(&BUCKETS)),
        (10, Varint),
        (11, Message(&EXEMPLAR)),
        (12, Fixed64),
        (13, Fixed64),
        (14, Fixed64),
    ],
    Ids::None,
);
static VALUE_AT_QUANTILE: Schema = message(&[(1, Fixed64), (2, Fixed64)]);
static SUMMARY_DATA_POINT: Schema = item(
    &[
        (7, Message(&KEY_VALUE)),
        (2, Fixed64),
        (3, Fixed64),
        (4, Fixed64),
        (5, Fixed64),
        (6, Message(&VALUE_AT_QUANTILE)),
        (8, Varint),
    ],
    Ids::None,
);
static GAUGE: Schema = message(&[(1, Message(&NUMBER_DATA_POINT))]);
static SUM: Schema = message(&[(1, Message(&NUMBER_DATA_POINT)), (2, Varint), (3, Varint)]);
static HISTOGRAM: Schema = message(&[(1, Message(&HISTOGRAM_DATA_POINT)), (2, Varint)]);
static EXPONENTIAL_HISTOGRAM: Schema =
    message(&[(1, Message(&EXPONENTIAL_HISTOGRAM_DATA_POINT)), (2, Varint)]);
static SUMMARY: Schema = message(&[(1, Message(&SUMMARY_DATA_POINT))]);
static METRIC: Schema = message(&[
    (1, Str),
    (2, Str),
    (3, Str),
    (12, Message(&KEY_VALUE)),
    (5, Message(&GAUGE)),
    (7, Message(&SUM)),
    (9, Message(&HISTOGRAM)),
    (10, Message(&EXPONENTIAL_HISTOGRAM)),
    (11, Message(&SUMMARY)),
]);
static SCOPE_METRICS: Schema = message(&[(1, Message(&SCOPE)), (2, Message(&METRIC)), (3, Str)]);
static RESOURCE_METRICS: Schema = message(&[
    (1, Message(&RESOURCE)),
    (2, Message(&SCOPE_METRICS)),
    (3, Str),
]);
/// `ExportMetricsServiceRequest`.
pub(crate) static METRICS_REQUEST: Schema = message(&[(1, Message(&RESOURCE_METRICS))]);
