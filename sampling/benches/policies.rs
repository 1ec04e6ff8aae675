//! Micro-benchmark: the cost of deciding one trace with the original
//! gateway's policy set (`processors.tail_sampling` of
//! `collector/tests/data/original-gateway.yaml`).
//!
//! ```text
//! cargo bench -p sampling --bench policies
//! ```
//!
//! Policies are internal to the engine, so this measures the public path a
//! trace takes through [`Sampler`]: `ingest` (group the spans by trace ID and
//! buffer them encoded) and `tick` once the traces are due (decode each
//! trace, evaluate every policy, combine the decisions, cache the decision,
//! regroup a sampled trace's spans). The `tick` column is the decision.
//!
//! Traces have 10 spans like `otel-loadgen`'s (4 string attributes of 16
//! bytes, a name, times, one resource with `service.name`, one scope) and
//! arrive 10 traces to a batch, as in the gateway bench (100 spans per
//! request). Populations: errors (an `ollyscale-api` trace with one span of
//! status ERROR), successful `ollyscale-*` traces (5% kept by the FNV rule),
//! `demo-shop`, another service (`checkout`), and the gateway bench's mix
//! (services `ollyscale-api`, `ollyscale-web`, `checkout`, `demo-shop` by
//! batch, 5% error traces). A second table isolates each top-level policy's
//! evaluation: a sampler with `[always_sample]` followed by
//! [`POLICY_COPIES`] copies of the policy against one with `[always_sample]`
//! alone, fed the same mix in alternating rounds. Both keep every trace, so
//! decoding, caching and handing back the trace cost the same; the
//! difference over the copies is one evaluation of the policy (with its
//! counters).
//!
//! One sampler per row is reused across rounds (its decision caches fill up
//! as in a long run); each round buffers [`TRACES_PER_ROUND`] new traces
//! (generated before the timer starts) and decides them with one `tick`.
//! After [`WARMUP_ROUNDS`] unmeasured rounds, the table shows the median of
//! [`ROUNDS`] rounds in nanoseconds per trace.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does one small
//! round per row and prints nothing, as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, status::StatusCode,
};
use sampling::{PolicyConfig, Sampler, SamplerConfig, Timestamp};

/// The original chart's gateway config.
const ORIGINAL_GATEWAY: &str = include_str!("../../collector/tests/data/original-gateway.yaml");

const SPANS_PER_TRACE: u64 = 10;
const TRACES_PER_BATCH: u64 = 10;
/// Traces buffered and decided per measured round.
const TRACES_PER_ROUND: u64 = 10_000;
const WARMUP_ROUNDS: u32 = 3;
const ROUNDS: u32 = 15;
/// Copies of a policy evaluated per trace when measuring it alone: its cost
/// is small next to decoding the trace, so it is multiplied to stand out.
const POLICY_COPIES: usize = 10;

/// Which traces a row feeds the sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Population {
    Errors,
    OllyscaleSuccess,
    Demo,
    Other,
    /// The gateway bench's load: services by batch, 5% error traces.
    Mix,
}

impl Population {
    const ALL: [Population; 5] = [
        Population::Errors,
        Population::OllyscaleSuccess,
        Population::Demo,
        Population::Other,
        Population::Mix,
    ];

    fn label(self) -> &'static str {
        match self {
            Population::Errors => "error (ollyscale-api, 1 span ERROR)",
            Population::OllyscaleSuccess => "ollyscale-* success",
            Population::Demo => "demo (demo-shop)",
            Population::Other => "other (checkout)",
            Population::Mix => "mix (loadgen: 4 services, 5% errors)",
        }
    }

    /// The service of batch `batch` and whether trace `trace` (globally
    /// numbered) is an error trace.
    fn shape(self, batch: u64, trace: u64) -> (&'static str, bool) {
        match self {
            Population::Errors => ("ollyscale-api", true),
            Population::OllyscaleSuccess => (
                ["ollyscale-api", "ollyscale-web"][(batch % 2) as usize],
                false,
            ),
            Population::Demo => ("demo-shop", false),
            Population::Other => ("checkout", false),
            Population::Mix => {
                const SERVICES: [&str; 4] =
                    ["ollyscale-api", "ollyscale-web", "checkout", "demo-shop"];
                let error = mix(trace ^ 0x5eed) % 100 < 5;
                (SERVICES[(batch % 4) as usize], error)
            }
        }
    }
}

/// splitmix64's finaliser: IDs and attribute values.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn string_kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Batch number `batch` (globally unique, so trace IDs never repeat):
/// [`TRACES_PER_BATCH`] whole traces of [`SPANS_PER_TRACE`] spans.
fn batch(population: Population, batch: u64) -> ResourceSpans {
    let mut spans = Vec::with_capacity((TRACES_PER_BATCH * SPANS_PER_TRACE) as usize);
    let mut service = "";
    for t in 0..TRACES_PER_BATCH {
        let trace = batch * TRACES_PER_BATCH + t;
        let (name, error) = population.shape(batch, trace);
        service = name;
        let id = mix(trace.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let trace_id = [id.to_be_bytes(), mix(id).to_be_bytes()].concat();
        let root = mix(id ^ 0x1234).max(1).to_be_bytes().to_vec();
        for s in 0..SPANS_PER_TRACE {
            let span_id = if s == 0 {
                root.clone()
            } else {
                mix(id ^ s).max(1).to_be_bytes().to_vec()
            };
            let start = 1_700_000_000_000_000_000 + trace * 1_000 + s;
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id,
                parent_span_id: if s == 0 { Vec::new() } else { root.clone() },
                name: format!("operation-{s}"),
                kind: if s == 0 { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000,
                attributes: (0..4)
                    .map(|a| string_kv(&format!("attr.{a}"), format!("{:016x}", mix(id ^ s ^ a))))
                    .collect(),
                status: (error && s == SPANS_PER_TRACE / 2).then(|| Status {
                    code: StatusCode::Error as i32,
                    message: "boom".into(),
                }),
                ..Default::default()
            });
        }
    }
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string_kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "otel-loadgen".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `processors.tail_sampling` of the original gateway config.
fn gateway_config() -> SamplerConfig {
    let root: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(ORIGINAL_GATEWAY).expect("original-gateway.yaml parses");
    let section = root
        .get("processors")
        .and_then(|p| p.get("tail_sampling"))
        .expect("original-gateway.yaml has processors.tail_sampling");
    let yaml = serde_yaml_ng::to_string(section).expect("the section serialises");
    // Built through `Sampler::from_yaml` once, to check the section as the
    // processor would, then kept typed so that rows can swap the policies.
    Sampler::from_yaml(&yaml).expect("the original policy set is accepted");
    SamplerConfig::from_yaml(&yaml).expect("the original policy set is accepted")
}

/// What one row measured: nanoseconds per trace, medians over the rounds.
#[derive(Clone, Debug, Default)]
struct Row {
    ingest_ns: f64,
    tick_ns: f64,
    total_ns: f64,
    kept: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One round's times, in nanoseconds per trace.
#[derive(Clone, Copy, Debug)]
struct Round {
    ingest_ns: f64,
    tick_ns: f64,
    sampled: u64,
}

/// A sampler fed round after round, time moving on by `decision_wait` each.
struct Runner {
    sampler: Sampler,
    wait: Duration,
    now: Timestamp,
}

impl Runner {
    fn new(config: &SamplerConfig) -> Runner {
        Runner {
            sampler: Sampler::new(config.clone()).expect("config accepted"),
            wait: config.decision_wait.max(Duration::from_millis(1)),
            now: Timestamp::from_secs(1),
        }
    }

    /// Buffers `input` and decides it with one `tick`.
    fn round(&mut self, input: Vec<ResourceSpans>) -> Round {
        let traces = input.len() as u64 * TRACES_PER_BATCH;
        let started = Instant::now();
        for rs in input {
            black_box(self.sampler.ingest(black_box(vec![rs]), self.now));
        }
        let ingested = Instant::now();
        self.now = self.now + self.wait;
        let decided = self.sampler.tick(self.now);
        let sampled = decided.iter().filter(|d| d.sampled).count() as u64;
        assert_eq!(decided.len() as u64, traces, "every trace decided");
        drop(black_box(decided));
        let finished = Instant::now();
        let per_trace = |d: Duration| d.as_nanos() as f64 / traces as f64;
        Round {
            ingest_ns: per_trace(ingested - started),
            tick_ns: per_trace(finished - ingested),
            sampled,
        }
    }

    /// The fraction of traces top-level policy `index` said to sample
    /// (`sampled="true"`), over every round so far.
    fn policy_sampled(&self, index: usize) -> f64 {
        self.sampler
            .stats()
            .policies
            .get(index)
            .map_or(f64::NAN, |p| {
                let all = p.sampled_label_true() + p.sampled_label_false();
                p.sampled_label_true() as f64 / all.max(1) as f64
            })
    }
}

/// The batches of one round: `traces` new traces of `population`.
struct Input {
    population: Population,
    batches_per_round: u64,
    next_batch: u64,
}

impl Input {
    fn new(population: Population, traces: u64) -> Input {
        Input {
            population,
            batches_per_round: traces.div_ceil(TRACES_PER_BATCH),
            next_batch: 0,
        }
    }

    fn next_round(&mut self) -> Vec<ResourceSpans> {
        let first = self.next_batch;
        self.next_batch += self.batches_per_round;
        (first..self.next_batch)
            .map(|b| batch(self.population, b))
            .collect()
    }
}

/// Runs `rounds` measured rounds (after `warmup` unmeasured ones) of
/// `traces` traces each through one sampler built from `config`.
fn measure(
    config: &SamplerConfig,
    population: Population,
    traces: u64,
    warmup: u32,
    rounds: u32,
) -> Row {
    let mut runner = Runner::new(config);
    let mut input = Input::new(population, traces);
    let (mut ingest, mut tick, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let (mut kept, mut decided) = (0u64, 0u64);
    for round in 0..warmup + rounds {
        let batches = input.next_round();
        let traces = batches.len() as u64 * TRACES_PER_BATCH;
        let r = runner.round(batches);
        if round >= warmup {
            ingest.push(r.ingest_ns);
            tick.push(r.tick_ns);
            total.push(r.ingest_ns + r.tick_ns);
            kept += r.sampled;
            decided += traces;
        }
    }
    Row {
        ingest_ns: median(&mut ingest),
        tick_ns: median(&mut tick),
        total_ns: median(&mut total),
        kept: kept as f64 / decided.max(1) as f64,
    }
}

/// One policy's evaluation, measured as the difference between a sampler
/// with `[always_sample, copies x policy]` and one with `[always_sample]`,
/// fed the same traces in alternating rounds; nanoseconds per evaluation
/// (the median of the rounds' differences / `copies`), and the fraction of
/// traces the policy samples.
fn measure_policy(
    config: &SamplerConfig,
    policy: &PolicyConfig,
    copies: usize,
    traces: u64,
    warmup: u32,
    rounds: u32,
) -> (f64, f64) {
    let baseline = always_sample();
    let mut policies = vec![baseline.clone()];
    for copy in 0..copies {
        let mut p = policy.clone();
        p.name = format!("{}#{copy}", policy.name);
        policies.push(p);
    }
    let mut base = Runner::new(&with_policies(config, vec![baseline]));
    let mut with = Runner::new(&with_policies(config, policies));
    let mut input = Input::new(Population::Mix, traces);
    let mut differences = Vec::new();
    for round in 0..warmup + rounds {
        let batches = input.next_round();
        let (a, b) = if round % 2 == 0 {
            let a = base.round(batches.clone());
            (a, with.round(batches))
        } else {
            let b = with.round(batches.clone());
            (base.round(batches), b)
        };
        if round >= warmup {
            differences.push((b.tick_ns - a.tick_ns) / copies as f64);
        }
    }
    (median(&mut differences), with.policy_sampled(1))
}

fn with_policies(config: &SamplerConfig, policies: Vec<PolicyConfig>) -> SamplerConfig {
    let mut config = config.clone();
    config.policies = policies;
    config
}

fn always_sample() -> PolicyConfig {
    let yaml = "decision_wait: 1s\npolicies: [{name: always-sample, type: always_sample}]";
    SamplerConfig::from_yaml(yaml)
        .expect("always_sample config")
        .policies
        .remove(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // libtest's protocol, for runners that list tests first: none here.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = args.iter().any(|a| a == "--bench");
    let (traces, warmup, rounds) = if full {
        (TRACES_PER_ROUND, WARMUP_ROUNDS, ROUNDS)
    } else {
        (100, 0, 1)
    };
    let config = gateway_config();

    let mut by_population = Vec::new();
    for population in Population::ALL {
        by_population.push((
            population,
            measure(&config, population, traces, warmup, rounds),
        ));
    }
    let base = measure(
        &with_policies(&config, vec![always_sample()]),
        Population::Mix,
        traces,
        warmup,
        rounds,
    );
    let mut by_policy = Vec::new();
    for policy in &config.policies {
        let (evaluation, samples) =
            measure_policy(&config, policy, POLICY_COPIES, traces, warmup, rounds);
        by_policy.push((
            policy.name.clone(),
            policy.policy_type.clone(),
            evaluation,
            samples,
        ));
    }
    if !full {
        return;
    }

    println!(
        "\nsampling: ns per trace of {SPANS_PER_TRACE} spans ({TRACES_PER_BATCH} traces per batch), \
         median of {rounds} rounds of {traces} traces after {warmup} warm-up rounds"
    );
    println!(
        "\noriginal gateway policy set ({} policies):",
        config.policies.len()
    );
    println!(
        "{:<38} {:>10} {:>12} {:>10} {:>7} {:>14}",
        "population", "ingest", "tick/decide", "total", "kept", "spans/s/core"
    );
    println!("{}", "-".repeat(38 + 10 + 12 + 10 + 7 + 14 + 5));
    for (population, row) in &by_population {
        println!(
            "{:<38} {:>10.0} {:>12.0} {:>10.0} {:>6.1}% {:>14.0}",
            population.label(),
            row.ingest_ns,
            row.tick_ns,
            row.total_ns,
            row.kept * 100.0,
            1e9 * SPANS_PER_TRACE as f64 / row.total_ns
        );
    }

    println!(
        "\neach top-level policy's evaluation, on the mix ({POLICY_COPIES} copies of it after an always_sample, \
         minus always_sample alone, / {POLICY_COPIES}; deciding a trace with always_sample alone: {:.0} ns):",
        base.tick_ns
    );
    println!(
        "{:<26} {:<18} {:>16} {:>9}",
        "policy", "type", "ns per trace", "samples"
    );
    println!("{}", "-".repeat(26 + 18 + 16 + 9 + 3));
    for (name, kind, evaluation, samples) in &by_policy {
        println!(
            "{:<26} {:<18} {:>16.0} {:>8.1}%",
            name,
            kind,
            evaluation,
            samples * 100.0
        );
    }
}
