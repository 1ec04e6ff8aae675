//! Self-metrics: counters, gauges and histograms with otelcol names, rendered
//! in the Prometheus text format.
//!
//! Handles are cheap atomics; registering the same name and labels again
//! (as a rebuilt pipeline does after a reload) returns the same series, so
//! counts survive reloads.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Label pairs of a series, sorted by name.
type Labels = Vec<(String, String)>;

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed bucket bounds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    bounds: Vec<f64>,
    /// One cell per bound plus the +Inf cell; not cumulative.
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum as f64 bits, updated with a CAS loop.
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramCells {
            bounds: bounds.to_vec(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation.
    pub fn record(&self, value: f64) {
        let cells = &self.0;
        let index = cells
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(cells.bounds.len());
        cells.counts[index].fetch_add(1, Ordering::Relaxed);
        cells.count.fetch_add(1, Ordering::Relaxed);
        let mut current = cells.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match cells.sum_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum_bits.load(Ordering::Relaxed))
    }
}

/// A gauge read from a function at scrape time (queue sizes, RSS).
type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    GaugeFn(GaugeFn),
    Histogram(Histogram),
}

#[derive(Clone)]
struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

/// All self-metrics of a process.
#[derive(Default)]
pub struct MetricsRegistry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry")
            .field("families", &self.families.lock().len())
            .finish()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

impl MetricsRegistry {
    /// A new, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn series<T>(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        pairs: &[(&str, &str)],
        make: impl Fn() -> Series,
        pick: impl Fn(&Series) -> Option<T>,
    ) -> T {
        let mut families = self.families.lock();
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        let series = family.series.entry(labels(pairs)).or_insert_with(&make);
        if let Some(handle) = pick(series) {
            return handle;
        }
        // Registered before with another type: a programming error. Give the
        // caller a detached handle rather than panicking.
        tracing::error!(
            metric = name,
            "self-metric registered with two different types"
        );
        let detached = make();
        match pick(&detached) {
            Some(handle) => handle,
            None => unreachable!("make and pick agree on the series type"),
        }
    }

    /// A counter series. Exposed as `<name>_total`, like otelcol's Prometheus endpoint.
    pub fn counter(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Counter {
        self.series(
            name,
            help,
            "counter",
            pairs,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// A gauge series.
    pub fn gauge(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Gauge {
        self.series(
            name,
            help,
            "gauge",
            pairs,
            || Series::Gauge(Gauge::default()),
            |s| match s {
                Series::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// A gauge whose value is read by calling `read` at scrape time. Registering
    /// the same series again replaces the function (the new pipeline's queue).
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &str,
        pairs: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut families = self.families.lock();
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind: "gauge",
            series: BTreeMap::new(),
        });
        family
            .series
            .insert(labels(pairs), Series::GaugeFn(Arc::new(read)));
    }

    /// A histogram series with the given upper bounds.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        pairs: &[(&str, &str)],
        bounds: &[f64],
    ) -> Histogram {
        self.series(
            name,
            help,
            "histogram",
            pairs,
            || Series::Histogram(Histogram::new(bounds)),
            |s| match s {
                Series::Histogram(h) => Some(h.clone()),
                _ => None,
            },
        )
    }

    /// The value of a counter or gauge series, for tests and summaries.
    pub fn value(&self, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        // Cloned out first: a gauge function may take locks of its own (a
        // queue's, a balancer's) whose holders may be registering a series.
        let series = self
            .families
            .lock()
            .get(name)?
            .series
            .get(&labels(pairs))?
            .clone();
        Some(match &series {
            Series::Counter(c) => c.get() as f64,
            Series::Gauge(g) => g.get() as f64,
            Series::GaugeFn(f) => f(),
            Series::Histogram(h) => h.count() as f64,
        })
    }

    /// Sum of a metric over all its series whose labels include `pairs`.
    pub fn sum(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        let Some(family) = self.families.lock().get(name).cloned() else {
            return 0.0;
        };
        family
            .series
            .iter()
            .filter(|(labels, _)| {
                pairs
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, s)| match s {
                Series::Counter(c) => c.get() as f64,
                Series::Gauge(g) => g.get() as f64,
                Series::GaugeFn(f) => f(),
                Series::Histogram(h) => h.sum(),
            })
            .sum()
    }

    /// Renders every series in the Prometheus text exposition format.
    ///
    /// The families are copied (series are shared handles) and the lock is
    /// released before any value is read: a gauge function may take another
    /// lock (a balancer's state) whose holder is waiting for this registry to
    /// register a series, and reading under the registry's lock would
    /// deadlock the scrape and that holder with it.
    pub fn render_prometheus(&self) -> String {
        let families = self.families.lock().clone();
        let mut out = String::new();
        for (name, family) in families.iter() {
            let exposed = if family.kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            };
            let _ = writeln!(out, "# HELP {exposed} {}", family.help);
            let _ = writeln!(out, "# TYPE {exposed} {}", family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => line(&mut out, &exposed, labels, None, c.get() as f64),
                    Series::Gauge(g) => line(&mut out, &exposed, labels, None, g.get() as f64),
                    Series::GaugeFn(f) => line(&mut out, &exposed, labels, None, f()),
                    Series::Histogram(h) => {
                        let cells = &h.0;
                        let mut cumulative = 0;
                        for (i, bound) in cells.bounds.iter().enumerate() {
                            cumulative += cells.counts[i].load(Ordering::Relaxed);
                            let le = format_value(*bound);
                            line(
                                &mut out,
                                &format!("{exposed}_bucket"),
                                labels,
                                Some(&le),
                                cumulative as f64,
                            );
                        }
                        line(
                            &mut out,
                            &format!("{exposed}_bucket"),
                            labels,
                            Some("+Inf"),
                            h.count() as f64,
                        );
                        line(&mut out, &format!("{exposed}_sum"), labels, None, h.sum());
                        line(
                            &mut out,
                            &format!("{exposed}_count"),
                            labels,
                            None,
                            h.count() as f64,
                        );
                    }
                }
            }
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn line(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(le.map(|le| ("le", le)))
        {
            if !first {
                out.push(',');
            }
            first = false;
            let escaped = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gauge function that takes a lock whose holder registers a series
    /// (the balancer adding a backend while it holds its state) must not
    /// deadlock a scrape. Here the function registers a series itself: with
    /// the registry locked during reads, that never returns.
    #[test]
    fn gauge_functions_run_outside_the_registry_lock() {
        let registry = MetricsRegistry::new();
        let inner = Arc::downgrade(&registry);
        registry.gauge_fn("queue_size", "Queued.", &[], move || {
            let registry = inner.upgrade().expect("registry alive");
            registry.counter("backend_sent", "Sent.", &[("backend", "b1")]);
            5.0
        });
        let (done, finished) = std::sync::mpsc::channel();
        let reader = registry.clone();
        std::thread::spawn(move || {
            let text = reader.render_prometheus();
            let value = reader.value("queue_size", &[]);
            let sum = reader.sum("queue_size", &[]);
            let _ = done.send((text, value, sum));
        });
        let (text, value, sum) = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("reading the registry deadlocked");
        assert!(text.contains("queue_size 5"), "{text}");
        assert_eq!(value, Some(5.0));
        assert_eq!(sum, 5.0);
        assert!(
            registry
                .render_prometheus()
                .contains("backend_sent_total{backend=\"b1\"} 0")
        );
    }

    #[test]
    fn same_series_is_shared_and_rendered_with_total_suffix() {
        let registry = MetricsRegistry::new();
        let a = registry.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        let b = registry.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("transport", "grpc"), ("receiver", "otlp")],
        );
        a.add(3);
        b.add(4);
        let text = registry.render_prometheus();
        assert!(
            text.contains("# TYPE otelcol_receiver_accepted_spans_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 7"
            ),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let registry = MetricsRegistry::new();
        let h = registry.histogram(
            "otelcol_processor_batch_batch_send_size",
            "Items per batch.",
            &[],
            &[10.0, 100.0],
        );
        for v in [5.0, 50.0, 500.0] {
            h.record(v);
        }
        let text = registry.render_prometheus();
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"10\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"100\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_processor_batch_batch_send_size_sum 555"),
            "{text}"
        );
    }
}
