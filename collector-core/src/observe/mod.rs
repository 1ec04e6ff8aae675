//! The collector's own telemetry: logs (`tracing`), self-metrics with otelcol
//! names, the Prometheus endpoint that serves them, and process metrics.

pub mod logs;
pub mod metrics;
mod process;
mod prometheus;
mod rate_limit;

pub use metrics::{Counter, Gauge, Histogram, MetricsRegistry};
pub use process::{cpu_seconds, register_process_metrics, rss_bytes};
pub use prometheus::serve_prometheus;
pub use rate_limit::RateLimitedLog;
