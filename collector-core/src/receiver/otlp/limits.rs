//! Per-request limits (`protocols.http.limits`): what one request from a
//! public client may carry.
//!
//! Attribute lists, string values, events and links beyond a limit are cut
//! the way the SDKs' span limits cut them (the `dropped_*_count` fields say
//! how much), so a page with a runaway attribute still gets its span through.
//! Items beyond the request's limit and items whose timestamps are absurdly
//! far from the collector's clock are refused and reported to the sender as
//! partial success.
//!
//! A request within every limit is only read, never modified, so it keeps
//! its original encoding (the exporters send those bytes as they came).

use super::config::RequestLimitsConfig;
use crate::pdata::{Logs, Metrics, Payload, Rejected, Signal, Traces};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;

/// The limits, with 0 read as "no limit".
#[derive(Clone, Debug)]
pub(crate) struct RequestLimits {
    max_items: usize,
    max_attributes: usize,
    max_value_length: usize,
    max_events: usize,
    max_links: usize,
    max_skew_nanos: Option<u64>,
    max_skew: Option<std::time::Duration>,
}

/// What [`RequestLimits::apply`] cut or refused in one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cuts {
    /// Items refused because the request carried more than the limit.
    pub(crate) refused_over_count: usize,
    /// Items refused for timestamps too far from now.
    pub(crate) refused_skewed: usize,
    /// Attributes dropped from lists over the limit.
    pub(crate) attributes: u64,
    /// String values shortened.
    pub(crate) values: u64,
    /// Span events dropped.
    pub(crate) events: u64,
    /// Span links dropped.
    pub(crate) links: u64,
}

fn limit(n: usize) -> usize {
    if n == 0 { usize::MAX } else { n }
}

impl RequestLimits {
    pub(crate) fn new(config: &RequestLimitsConfig) -> Self {
        Self {
            max_items: limit(config.max_items_per_request),
            max_attributes: limit(config.max_attributes),
            max_value_length: limit(config.max_attribute_value_length),
            max_events: limit(config.max_events_per_span),
            max_links: limit(config.max_links_per_span),
            max_skew_nanos: config
                .max_timestamp_skew
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            max_skew: config.max_timestamp_skew,
        }
    }

    /// What the sender is told (partial success) about the items refused.
    pub(crate) fn rejected(&self, signal: Signal, cuts: &Cuts) -> Option<Rejected> {
        let what = match signal {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        };
        let mut parts = Vec::new();
        if cuts.refused_over_count > 0 {
            parts.push(format!(
                "{} {what} refused: a request may carry {} at most",
                cuts.refused_over_count, self.max_items
            ));
        }
        if cuts.refused_skewed > 0
            && let Some(skew) = self.max_skew
        {
            parts.push(format!(
                "{} {what} refused: timestamps more than {} from the collector's clock",
                cuts.refused_skewed,
                humantime_secs(skew)
            ));
        }
        (!parts.is_empty()).then(|| Rejected {
            items: cuts.refused_over_count + cuts.refused_skewed,
            message: parts.join("; "),
        })
    }

    /// `value` cut to the attribute value length limit (for attributes the
    /// receiver adds itself, such as the user agent).
    pub(crate) fn cut_string(&self, mut value: String) -> String {
        if let Some((end, _)) = value.char_indices().nth(self.max_value_length) {
            value.truncate(end);
        }
        value
    }

    /// Cuts `payload` to the limits; `now` is the collector's clock in Unix
    /// nanoseconds.
    pub(crate) fn apply(&self, payload: &mut Payload, now: u64) -> Cuts {
        let mut cuts = Cuts::default();
        match payload {
            Payload::Traces(traces) => self.traces(traces, now, &mut cuts),
            Payload::Logs(logs) => self.logs(logs, now, &mut cuts),
            Payload::Metrics(metrics) => self.metrics(metrics, &mut cuts),
        }
        if payload.item_count() > self.max_items {
            let kept = payload.split_front(self.max_items);
            cuts.refused_over_count = payload.item_count();
            *payload = kept;
        }
        cuts
    }

    fn skewed(&self, now: u64, timestamp: u64) -> bool {
        self.max_skew_nanos
            .is_some_and(|skew| timestamp != 0 && timestamp.abs_diff(now) > skew)
    }

    fn attributes_over(&self, attributes: &[KeyValue]) -> bool {
        attributes.len() > self.max_attributes
            || (self.max_value_length != usize::MAX
                && attributes
                    .iter()
                    .any(|kv| kv.value.as_ref().is_some_and(|v| self.value_over(v))))
    }

    fn value_over(&self, value: &AnyValue) -> bool {
        match &value.value {
            Some(any_value::Value::StringValue(s)) => over_chars(s, self.max_value_length),
            Some(any_value::Value::ArrayValue(array)) => {
                array.values.iter().any(|v| self.value_over(v))
            }
            Some(any_value::Value::KvlistValue(list)) => list
                .values
                .iter()
                .any(|kv| kv.value.as_ref().is_some_and(|v| self.value_over(v))),
            _ => false,
        }
    }

    /// Cuts an attribute list; returns how many attributes were dropped.
    fn cut_attributes(&self, attributes: &mut Vec<KeyValue>, cuts: &mut Cuts) -> u32 {
        let dropped = attributes.len().saturating_sub(self.max_attributes);
        attributes.truncate(self.max_attributes);
        if self.max_value_length != usize::MAX {
            for value in attributes.iter_mut().filter_map(|kv| kv.value.as_mut()) {
                self.cut_value(value, cuts);
            }
        }
        cuts.attributes += dropped as u64;
        u32::try_from(dropped).unwrap_or(u32::MAX)
    }

    fn cut_value(&self, value: &mut AnyValue, cuts: &mut Cuts) {
        match &mut value.value {
            Some(any_value::Value::StringValue(s)) => {
                if let Some((end, _)) = s.char_indices().nth(self.max_value_length) {
                    s.truncate(end);
                    cuts.values += 1;
                }
            }
            Some(any_value::Value::ArrayValue(array)) => {
                for v in &mut array.values {
                    self.cut_value(v, cuts);
                }
            }
            Some(any_value::Value::KvlistValue(list)) => {
                for v in list.values.iter_mut().filter_map(|kv| kv.value.as_mut()) {
                    self.cut_value(v, cuts);
                }
            }
            _ => {}
        }
    }

    fn span_over(&self, span: &Span, now: u64) -> bool {
        self.skewed(now, span.start_time_unix_nano)
            || self.skewed(now, span.end_time_unix_nano)
            || span.events.len() > self.max_events
            || span.links.len() > self.max_links
            || self.attributes_over(&span.attributes)
            || span
                .events
                .iter()
                .any(|e| self.attributes_over(&e.attributes))
            || span
                .links
                .iter()
                .any(|l| self.attributes_over(&l.attributes))
    }

    fn traces(&self, traces: &mut Traces, now: u64, cuts: &mut Cuts) {
        let over = traces.resources().iter().any(|r| {
            r.resource
                .as_ref()
                .is_some_and(|res| self.attributes_over(&res.attributes))
                || r.scope_spans.iter().any(|s| {
                    s.scope
                        .as_ref()
                        .is_some_and(|scope| self.attributes_over(&scope.attributes))
                        || s.spans.iter().any(|span| self.span_over(span, now))
                })
        });
        if !over {
            return;
        }
        traces.modify(|resources| {
            for resource in resources.iter_mut() {
                if let Some(res) = &mut resource.resource {
                    res.dropped_attributes_count = res
                        .dropped_attributes_count
                        .saturating_add(self.cut_attributes(&mut res.attributes, cuts));
                }
                for scope in &mut resource.scope_spans {
                    if let Some(s) = &mut scope.scope {
                        s.dropped_attributes_count = s
                            .dropped_attributes_count
                            .saturating_add(self.cut_attributes(&mut s.attributes, cuts));
                    }
                    let before = scope.spans.len();
                    scope.spans.retain(|span| {
                        !self.skewed(now, span.start_time_unix_nano)
                            && !self.skewed(now, span.end_time_unix_nano)
                    });
                    cuts.refused_skewed += before - scope.spans.len();
                    for span in &mut scope.spans {
                        self.cut_span(span, cuts);
                    }
                }
            }
        });
    }

    fn cut_span(&self, span: &mut Span, cuts: &mut Cuts) {
        span.dropped_attributes_count = span
            .dropped_attributes_count
            .saturating_add(self.cut_attributes(&mut span.attributes, cuts));
        let events = span.events.len().saturating_sub(self.max_events);
        span.events.truncate(self.max_events);
        span.dropped_events_count = span
            .dropped_events_count
            .saturating_add(u32::try_from(events).unwrap_or(u32::MAX));
        cuts.events += events as u64;
        for event in &mut span.events {
            event.dropped_attributes_count = event
                .dropped_attributes_count
                .saturating_add(self.cut_attributes(&mut event.attributes, cuts));
        }
        let links = span.links.len().saturating_sub(self.max_links);
        span.links.truncate(self.max_links);
        span.dropped_links_count = span
            .dropped_links_count
            .saturating_add(u32::try_from(links).unwrap_or(u32::MAX));
        cuts.links += links as u64;
        for link in &mut span.links {
            link.dropped_attributes_count = link
                .dropped_attributes_count
                .saturating_add(self.cut_attributes(&mut link.attributes, cuts));
        }
    }

    fn record_over(&self, record: &LogRecord, now: u64) -> bool {
        self.skewed(now, record.time_unix_nano) || self.attributes_over(&record.attributes)
    }

    fn logs(&self, logs: &mut Logs, now: u64, cuts: &mut Cuts) {
        let over = logs.resources().iter().any(|r| {
            r.resource
                .as_ref()
                .is_some_and(|res| self.attributes_over(&res.attributes))
                || r.scope_logs.iter().any(|s| {
                    s.scope
                        .as_ref()
                        .is_some_and(|scope| self.attributes_over(&scope.attributes))
                        || s.log_records.iter().any(|l| self.record_over(l, now))
                })
        });
        if !over {
            return;
        }
        logs.modify(|resources| {
            for resource in resources.iter_mut() {
                if let Some(res) = &mut resource.resource {
                    res.dropped_attributes_count = res
                        .dropped_attributes_count
                        .saturating_add(self.cut_attributes(&mut res.attributes, cuts));
                }
                for scope in &mut resource.scope_logs {
                    if let Some(s) = &mut scope.scope {
                        s.dropped_attributes_count = s
                            .dropped_attributes_count
                            .saturating_add(self.cut_attributes(&mut s.attributes, cuts));
                    }
                    let before = scope.log_records.len();
                    scope
                        .log_records
                        .retain(|l| !self.skewed(now, l.time_unix_nano));
                    cuts.refused_skewed += before - scope.log_records.len();
                    for record in &mut scope.log_records {
                        record.dropped_attributes_count = record
                            .dropped_attributes_count
                            .saturating_add(self.cut_attributes(&mut record.attributes, cuts));
                    }
                }
            }
        });
    }

    fn metrics(&self, metrics: &mut Metrics, cuts: &mut Cuts) {
        let over = metrics.resources().iter().any(|r| {
            r.resource
                .as_ref()
                .is_some_and(|res| self.attributes_over(&res.attributes))
                || r.scope_metrics.iter().any(|s| {
                    s.scope
                        .as_ref()
                        .is_some_and(|scope| self.attributes_over(&scope.attributes))
                        || s.metrics.iter().any(|m| {
                            point_attributes(m).any(|attributes| self.attributes_over(attributes))
                        })
                })
        });
        if !over {
            return;
        }
        metrics.modify(|resources| {
            for resource in resources.iter_mut() {
                if let Some(res) = &mut resource.resource {
                    res.dropped_attributes_count = res
                        .dropped_attributes_count
                        .saturating_add(self.cut_attributes(&mut res.attributes, cuts));
                }
                for scope in &mut resource.scope_metrics {
                    if let Some(s) = &mut scope.scope {
                        s.dropped_attributes_count = s
                            .dropped_attributes_count
                            .saturating_add(self.cut_attributes(&mut s.attributes, cuts));
                    }
                    for metric in &mut scope.metrics {
                        // Data points have no dropped-attributes count: the
                        // self-metric is the only record of the cut.
                        for_each_point_attributes(metric, |attributes| {
                            self.cut_attributes(attributes, cuts);
                        });
                    }
                }
            }
        });
    }
}

/// Whether `s` has more than `max` characters (bytes bound it from below).
fn over_chars(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().nth(max).is_some()
}

/// The attribute lists of a metric's data points.
fn point_attributes(metric: &Metric) -> Box<dyn Iterator<Item = &Vec<KeyValue>> + '_> {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => Box::new(g.data_points.iter().map(|p| &p.attributes)),
        Some(metric::Data::Sum(s)) => Box::new(s.data_points.iter().map(|p| &p.attributes)),
        Some(metric::Data::Histogram(h)) => Box::new(h.data_points.iter().map(|p| &p.attributes)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            Box::new(h.data_points.iter().map(|p| &p.attributes))
        }
        Some(metric::Data::Summary(s)) => Box::new(s.data_points.iter().map(|p| &p.attributes)),
        None => Box::new(std::iter::empty()),
    }
}

fn for_each_point_attributes(metric: &mut Metric, mut f: impl FnMut(&mut Vec<KeyValue>)) {
    match &mut metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(metric::Data::Sum(s)) => s.data_points.iter_mut().for_each(|p| f(&mut p.attributes)),
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        Some(metric::Data::Summary(s)) => {
            s.data_points.iter_mut().for_each(|p| f(&mut p.attributes))
        }
        None => {}
    }
}

/// `90000s` as `25h`, `90s` as `90s`.
fn humantime_secs(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{:?}", d)
    }
}

/// The collector's clock in Unix nanoseconds.
pub(crate) fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
