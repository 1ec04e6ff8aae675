use super::memory::total_memory_under;
use super::*;
use crate::component::{ComponentId, ErasedProcessor, Host, Lifecycle};
use crate::consumer::{ConsumeError, Consumer, ErrorKind};
use crate::observe::MetricsRegistry;
use crate::pdata::{Telemetry, Traces};
use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn spans(n: usize) -> Telemetry {
    Telemetry::from(Traces::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

/// Counts the items it accepts.
#[derive(Default)]
struct Sink(AtomicUsize);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        self.0.fetch_add(telemetry.item_count(), Ordering::SeqCst);
        Ok(())
    }
}

/// A limiter reading `used` (bytes; `u64::MAX` = unreadable).
fn limiter(
    hard_mib: u64,
    soft_mib: u64,
    used: Arc<AtomicU64>,
    interval: Duration,
) -> (MemoryLimiter, Arc<Sink>, Arc<MetricsRegistry>) {
    let sink = Arc::new(Sink::default());
    let registry = MetricsRegistry::new();
    let refused = registry.counter(
        "otelcol_processor_refused_spans",
        "",
        &[("processor", "memory_limiter")],
    );
    let read: MemoryReader = Arc::new(move || match used.load(Ordering::SeqCst) {
        u64::MAX => None,
        v => Some(v),
    });
    let limiter = MemoryLimiter::new(
        "memory_limiter".into(),
        MemoryLimits {
            hard_bytes: hard_mib * MIB,
            soft_bytes: soft_mib * MIB,
        },
        interval,
        read,
        Signal::Traces,
        sink.clone(),
        refused,
    );
    (limiter, sink, registry)
}

fn refused(registry: &MetricsRegistry) -> f64 {
    registry
        .value(
            "otelcol_processor_refused_spans",
            &[("processor", "memory_limiter")],
        )
        .unwrap_or(0.0)
}

#[tokio::test]
async fn refuses_from_the_soft_limit_until_usage_drops() {
    let used = Arc::new(AtomicU64::new(50 * MIB));
    let (limiter, sink, registry) = limiter(100, 80, used.clone(), Duration::from_secs(3600));
    // (used MiB, refusing after the check)
    let steps = [
        (50, false),
        (80, true), // at the soft limit
        (95, true),
        (120, true), // above the hard limit as well
        (79, false),
        (0, false),
    ];
    let mut accepted = 0;
    let mut refused_items = 0;
    for (mib, refusing) in steps {
        used.store(mib * MIB, Ordering::SeqCst);
        limiter.check();
        assert_eq!(limiter.is_refusing(), refusing, "{mib} MiB");
        let result = limiter.consume(spans(3)).await;
        if refusing {
            let Err(e) = result else {
                panic!("{mib} MiB: must refuse");
            };
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.is_retryable());
            assert_eq!(e.message(), "data refused due to high memory usage");
            refused_items += 3;
        } else {
            assert!(result.is_ok(), "{mib} MiB: {result:?}");
            accepted += 3;
        }
    }
    assert_eq!(sink.0.load(Ordering::SeqCst), accepted);
    assert_eq!(refused(&registry), refused_items as f64);
}

#[tokio::test]
async fn keeps_its_state_when_memory_cannot_be_read() {
    let used = Arc::new(AtomicU64::new(90 * MIB));
    let (limiter, _sink, _registry) = limiter(100, 80, used.clone(), Duration::from_secs(3600));
    limiter.check();
    assert!(limiter.is_refusing());
    used.store(u64::MAX, Ordering::SeqCst);
    limiter.check();
    assert!(limiter.is_refusing());
}

#[tokio::test]
async fn start_checks_at_once_then_every_interval() {
    let used = Arc::new(AtomicU64::new(90 * MIB));
    let (limiter, _sink, _registry) = limiter(100, 80, used.clone(), Duration::from_millis(5));
    assert!(!limiter.is_refusing(), "no check before start");
    assert!(limiter.start().await.is_ok());
    assert!(limiter.is_refusing(), "start measures once");
    used.store(10 * MIB, Ordering::SeqCst);
    let recovered = tokio::time::timeout(Duration::from_secs(10), async {
        while limiter.is_refusing() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(recovered.is_ok(), "the check task did not run");
    assert!(
        limiter
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn refuses_with_the_real_rss_above_a_tiny_limit() {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("memory_limiter", None),
        host: host.clone(),
    };
    let config = MemoryLimiterConfig {
        check_interval: Duration::from_secs(1),
        limit_mib: 1,
        ..Default::default()
    };
    let sink = Arc::new(Sink::default());
    let processor = match ProcessorFactory::create(
        &MemoryLimiterFactory,
        &ctx,
        &config,
        Signal::Traces,
        sink,
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert!(processor.start().await.is_ok());
    let Err(e) = processor.consume(spans(2)).await else {
        panic!("a test process uses more than 1 MiB");
    };
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(
        host.metrics.value(
            "otelcol_processor_refused_spans",
            &[("processor", "memory_limiter")]
        ),
        Some(2.0)
    );
    assert!(
        processor
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await
            .is_ok()
    );
}

fn parse(yaml: &str) -> Result<MemoryLimiterConfig, crate::config::ConfigError> {
    let value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    MemoryLimiterFactory.parse("processors.memory_limiter", &value)?;
    crate::config::deserialize_at("processors.memory_limiter", value)
}

#[test]
fn limits_from_mib_and_percentages() {
    let config = parse("check_interval: 1s\nlimit_mib: 500").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.check_interval, Duration::from_secs(1));
    let never = || -> Option<u64> { panic!("total memory is not needed for limit_mib") };
    assert_eq!(
        config.limits(never),
        Ok(MemoryLimits {
            hard_bytes: 500 * MIB,
            soft_bytes: 400 * MIB,
        })
    );

    let config = parse("check_interval: 1s\nlimit_mib: 500\nspike_limit_mib: 100")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.limits(never),
        Ok(MemoryLimits {
            hard_bytes: 500 * MIB,
            soft_bytes: 400 * MIB,
        })
    );

    let config = parse("check_interval: 1s\nlimit_percentage: 75\nspike_limit_percentage: 15")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.limits(|| Some(1000 * MIB)),
        Ok(MemoryLimits {
            hard_bytes: 750 * MIB,
            soft_bytes: 600 * MIB,
        })
    );

    let config =
        parse("check_interval: 1s\nlimit_percentage: 50").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.limits(|| Some(1000 * MIB)),
        Ok(MemoryLimits {
            hard_bytes: 500 * MIB,
            soft_bytes: 400 * MIB,
        })
    );
    assert!(config.limits(|| None).is_err());

    // otelcol's Go GC knobs are accepted.
    assert!(
        parse("check_interval: 1s\nlimit_mib: 5\nmin_gc_interval_when_soft_limited: 10s").is_ok()
    );
}

#[test]
fn config_errors_name_their_path() {
    let cases = [
        (
            "limit_mib: 100",
            "processors.memory_limiter.check_interval: must be greater than zero",
        ),
        (
            "check_interval: 1s",
            "processors.memory_limiter.limit_mib: either limit_mib or limit_percentage must be greater than zero",
        ),
        (
            "check_interval: 1s\nlimit_mib: 100\nlimit_percentage: 50",
            "processors.memory_limiter.limit_percentage: cannot be used together with limit_mib; set one of them",
        ),
        (
            "check_interval: 1s\nlimit_mib: 100\nspike_limit_mib: 100",
            "processors.memory_limiter.spike_limit_mib: must be smaller than limit_mib (100)",
        ),
        (
            "check_interval: 1s\nlimit_percentage: 101",
            "processors.memory_limiter.limit_percentage: must be between 1 and 100",
        ),
        (
            "check_interval: 1s\nlimit_percentage: 50\nspike_limit_percentage: 50",
            "processors.memory_limiter.spike_limit_percentage: must be smaller than limit_percentage (50)",
        ),
        (
            "check_interval: 1s\nlimit_percentage: 50\nspike_limit_mib: 10",
            "processors.memory_limiter.spike_limit_mib: only applies with limit_mib (use spike_limit_percentage with limit_percentage)",
        ),
        (
            "check_interval: 1s\nlimit_mib: 50\nspike_limit_percentage: 10",
            "processors.memory_limiter.spike_limit_percentage: only applies with limit_percentage (use spike_limit_mib with limit_mib)",
        ),
    ];
    for (yaml, want) in cases {
        match parse(yaml) {
            Ok(_) => panic!("{yaml:?} should be rejected"),
            Err(e) => assert_eq!(e.to_string(), want, "{yaml}"),
        }
    }
    let Err(e) = parse("check_interval: 1s\nlimit_mb: 5") else {
        panic!("unknown keys must be rejected");
    };
    assert!(e.message.contains("limit_mb"), "{e}");
}

fn write(root: &std::path::Path, file: &str, text: &str) {
    let path = root.join(file);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

/// Files to create under a fake root: (path, content).
type Files<'a> = &'a [(&'a str, &'a str)];

#[test]
fn total_memory_prefers_the_cgroup_limit() {
    let meminfo = "MemTotal:        2048000 kB\nMemFree:          100000 kB\n";
    let host = 2_048_000 * 1024;
    let cases: [(Files<'_>, Option<u64>); 6] = [
        (&[("proc/meminfo", meminfo)], Some(host)),
        (
            &[
                ("proc/meminfo", meminfo),
                ("sys/fs/cgroup/memory.max", "536870912\n"),
            ],
            Some(512 * MIB),
        ),
        (
            &[
                ("proc/meminfo", meminfo),
                ("sys/fs/cgroup/memory.max", "max\n"),
            ],
            Some(host),
        ),
        (
            &[
                ("proc/meminfo", meminfo),
                (
                    "sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "9223372036854771712\n",
                ),
            ],
            Some(host),
        ),
        (
            &[
                ("proc/meminfo", meminfo),
                ("sys/fs/cgroup/memory/memory.limit_in_bytes", "268435456"),
            ],
            Some(256 * MIB),
        ),
        // A cgroup limit above the host's memory: the host's total.
        (
            &[
                ("proc/meminfo", meminfo),
                ("sys/fs/cgroup/memory.max", "99999999999999"),
            ],
            Some(host),
        ),
    ];
    for (files, want) in cases {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (file, text) in files {
            write(dir.path(), file, text);
        }
        assert_eq!(total_memory_under(dir.path()), want, "{files:?}");
    }
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total_memory_under(empty.path()), None);
    // This machine has some.
    assert!(total_memory().is_some_and(|t| t > 0));
}
