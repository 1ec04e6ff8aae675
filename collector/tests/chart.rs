//! The Helm chart (`deploy/charts/ollyscale-otel`) with real Helm 3 and
//! Helm 4: lint and render in every supported shape, validate the manifests
//! against the Kubernetes 1.24 and 1.33 schemas, check the contract the old
//! chart's README documents (Service names and ports, labels, probes, the
//! namespace rule, the values schema), and run every rendered collector
//! config through our binaries' `validate`.

mod support;

use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/charts/ollyscale-otel")
}

/// A tool `cargo xtask setup` installs, from its `OLLY_*` variable.
fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run the tests through `cargo xtask ci`, or `eval \"$(cargo xtask env)\"` after `cargo xtask setup`"));
    assert!(
        path.is_file(),
        "{} ({var}) is missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn helms() -> [(&'static str, PathBuf); 2] {
    [("helm3", tool("OLLY_HELM3")), ("helm4", tool("OLLY_HELM4"))]
}

/// The old chart README's example values file.
const README_EXAMPLE: &str = "
gatewayCollector:
  replicas: 3
  resources:
    limits:
      memory: 2Gi
    requests:
      memory: 1Gi

instrumentation:
  python:
    image:
      tag: 0.60b1
";

/// A way to install the chart: `--set`s and an optional values file.
struct Scenario {
    name: &'static str,
    sets: &'static [&'static str],
    values: Option<&'static str>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "defaults",
        sets: &[],
        values: None,
    },
    Scenario {
        name: "no agent",
        sets: &["agentCollector.enabled=false"],
        values: None,
    },
    Scenario {
        name: "no gateway",
        sets: &["gatewayCollector.enabled=false"],
        values: None,
    },
    Scenario {
        name: "no browser",
        sets: &["browserCollector.enabled=false"],
        values: None,
    },
    Scenario {
        name: "no instrumentation",
        sets: &["instrumentation.enabled=false"],
        values: None,
    },
    Scenario {
        name: "no templates",
        sets: &["otelTemplates.enabled=false"],
        values: None,
    },
    Scenario {
        name: "3 gateways",
        sets: &["gatewayCollector.replicas=3"],
        values: None,
    },
    Scenario {
        name: "3 gateways, autoscaled",
        sets: &[
            "gatewayCollector.replicas=3",
            "gatewayCollector.autoscaling.enabled=true",
        ],
        values: None,
    },
    Scenario {
        name: "eBPF agent",
        sets: &["ebpfAgent.enabled=true"],
        values: None,
    },
    Scenario {
        name: "eBPF agent, privileged as the old chart",
        sets: &[
            "ebpfAgent.enabled=true",
            "ebpfAgent.securityContext.privileged=true",
            "ebpfAgent.securityContext.readOnlyRootFilesystem=false",
        ],
        values: None,
    },
    Scenario {
        name: "the old README's example",
        sets: &[],
        values: Some(README_EXAMPLE),
    },
];

/// `helm template` (or `lint`) of the chart; Ok(stdout) or Err(stderr).
fn helm(
    helm: &Path,
    verb: &str,
    namespace: &str,
    sets: &[&str],
    values: Option<&str>,
) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(helm);
    command.arg(verb);
    if verb == "template" {
        command.arg("ollyscale-otel");
    }
    command.arg(chart()).args(["--namespace", namespace]);
    for set in sets {
        command.args(["--set", set]);
    }
    if let Some(values) = values {
        let path = dir.path().join("values.yaml");
        std::fs::write(&path, values).expect("values file");
        command.arg("-f").arg(path);
    }
    // Helm keeps a cache and config; keep them out of $HOME.
    command
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data"));
    let output = command.output().expect("run helm");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml_ng::from_str::<Value>(doc).ok())
        .filter(|doc| doc.get("kind").is_some())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn render_defaults(sets: &[&str]) -> Vec<Value> {
    let [(_, helm3), _] = helms();
    documents(&helm(&helm3, "template", "otel-system", sets, None).expect("render"))
}

#[test]
fn every_scenario_lints_renders_and_validates_with_helm_3_and_4() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (which, binary) in helms() {
        for scenario in SCENARIOS {
            let what = format!("{which}, {}", scenario.name);
            helm(
                &binary,
                "lint",
                "otel-system",
                scenario.sets,
                scenario.values,
            )
            .unwrap_or_else(|e| panic!("lint ({what}): {e}"));
            let rendered = helm(
                &binary,
                "template",
                "otel-system",
                scenario.sets,
                scenario.values,
            )
            .unwrap_or_else(|e| panic!("template ({what}): {e}"));
            assert!(!documents(&rendered).is_empty(), "{what}: nothing rendered");
            let path = out.path().join(format!("{which}-{}.yaml", files.len()));
            std::fs::write(&path, rendered).expect("write manifests");
            files.push(path);
        }
    }
    let validate = tool("OLLY_KUBERNETES_VALIDATE");
    for version in ["1.24.0", "1.33.0"] {
        let output = Command::new(&validate)
            .args(["--kubernetes-version", version, "--strict", "--quiet"])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "Kubernetes {version}:\n{text}");
        // Only the Instrumentation CR (the operator's) has no schema here.
        for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(line.contains("kind Instrumentation"), "{line}");
        }
    }
}

#[test]
fn a_misspelt_key_fails_naming_it() {
    for (which, binary) in helms() {
        let err = helm(
            &binary,
            "template",
            "otel-system",
            &["gatewayCollector.replicaz=3"],
            None,
        )
        .expect_err("a misspelt key must fail");
        assert!(err.contains("replicaz"), "{which}: {err}");
        let err = helm(
            &binary,
            "template",
            "otel-system",
            &["gatewayCollector.replicas=three"],
            None,
        )
        .expect_err("a string for an integer must fail");
        assert!(err.contains("replicas"), "{which}: {err}");
    }
}

#[test]
fn another_namespace_fails_unless_allowed() {
    for (which, binary) in helms() {
        let err = helm(&binary, "template", "default", &[], None).expect_err("wrong namespace");
        assert!(
            err.contains("must be installed into namespace \"otel-system\""),
            "{which}: {err}"
        );
        let rendered = helm(
            &binary,
            "template",
            "default",
            &["global.allowOtherNamespace=true"],
            None,
        )
        .unwrap_or_else(|e| panic!("{which}: {e}"));
        assert!(rendered.contains("namespace: default"));
    }
}

#[test]
fn services_labels_probes_and_configs_keep_the_old_contract() {
    let docs = render_defaults(&[]);
    let ports = |svc: &Value| -> Vec<i64> {
        svc["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(|p| p["port"].as_i64().expect("port"))
            .collect()
    };
    let gateway = find(&docs, "Service", "gateway-collector");
    assert_eq!(ports(gateway), [4317, 4318]);
    let headless = find(&docs, "Service", "gateway-collector-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(ports(headless), [4317]);
    let agent = find(&docs, "Service", "agent-collector");
    assert_eq!(ports(agent), [4317, 4318]);
    assert_eq!(agent["spec"]["internalTrafficPolicy"], "Local");
    let browser = find(&docs, "Service", "ollyscale-browser-collector");
    assert_eq!(ports(browser), [4318]);

    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values");
    for (kind, name, key) in [
        ("DaemonSet", "agent-collector", "agentCollector"),
        ("Deployment", "gateway-collector", "gatewayCollector"),
        ("Deployment", "browser-collector", "browserCollector"),
    ] {
        let workload = find(&docs, kind, name);
        let pod = &workload["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        // The old README's troubleshooting selector finds every collector.
        assert_eq!(
            labels["app.kubernetes.io/component"], "opentelemetry-collector",
            "{name}"
        );
        assert_eq!(labels["app.kubernetes.io/instance"], "ollyscale-otel");
        let selector = &workload["spec"]["selector"]["matchLabels"];
        for (k, v) in selector.as_mapping().expect("selector") {
            assert_eq!(
                &labels[k.as_str().expect("key")],
                v,
                "{name}: selector label {k:?}"
            );
        }
        assert!(pod["metadata"]["annotations"]["checksum/config"].is_string());

        let container = &pod["spec"]["containers"][0];
        let health_port = container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "health")
            .expect("health port")["containerPort"]
            .clone();
        assert_eq!(health_port, Value::Number(13133.into()));
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], "health");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "health");
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["capabilities"]["drop"][0], "ALL");
        let env: BTreeSet<&str> = container["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        for var in ["KUBE_NODE_NAME", "POD_NAME", "POD_NAMESPACE"] {
            assert!(env.contains(var), "{name}: {var}");
        }
        // Longer grace than the drain deadline.
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let timeout: i64 = args
            .iter()
            .find_map(|a| a.strip_prefix("--shutdown-timeout="))
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .expect("--shutdown-timeout");
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("grace");
        assert!(
            grace > timeout,
            "{name}: grace {grace} <= shutdown {timeout}"
        );

        // The ConfigMap holds the values' config exactly, and the overlay
        // the probes rely on.
        let configmap = find(&docs, "ConfigMap", name);
        let config: Value = serde_yaml_ng::from_str(
            configmap["data"]["collector.yaml"]
                .as_str()
                .expect("collector.yaml"),
        )
        .expect("config yaml");
        assert_eq!(config, values[key]["config"], "{name}");
        let overlay: Value = serde_yaml_ng::from_str(
            configmap["data"]["chart-overlay.yaml"]
                .as_str()
                .expect("overlay"),
        )
        .expect("overlay yaml");
        assert_eq!(
            overlay["extensions"]["health_check"]["endpoint"],
            "0.0.0.0:13133"
        );
        let listed = overlay["service"]["extensions"]
            .as_sequence()
            .expect("extensions");
        assert!(listed.iter().any(|e| e == "health_check"));
        if let Some(own) = config["service"]["extensions"].as_sequence() {
            for e in own {
                assert!(listed.contains(e), "{name}: the overlay keeps {e:?}");
            }
        }
    }

    let instrumentation = find(&docs, "Instrumentation", "ollyscale-instrumentation");
    assert_eq!(instrumentation["apiVersion"], "opentelemetry.io/v1alpha1");
    assert_eq!(instrumentation["metadata"]["namespace"], "otel-system");
    assert_eq!(
        instrumentation["spec"]["exporter"]["endpoint"],
        "http://agent-collector.otel-system.svc.cluster.local:4318"
    );
    assert!(
        instrumentation["spec"]["python"]["image"]
            .as_str()
            .is_some_and(|i| i.ends_with(":0.60b1"))
    );
    // No API access for collectors whose configs do not use it.
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRole"));
}

#[test]
fn a_config_change_rolls_the_pods_and_scaling_settings_render() {
    let checksum = |docs: &[Value]| {
        find(docs, "Deployment", "gateway-collector")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/config"]
            .clone()
    };
    let before = checksum(&render_defaults(&[]));
    let after = checksum(&render_defaults(&[
        "gatewayCollector.config.processors.batch.timeout=1s",
    ]));
    assert_ne!(before, after);

    let docs = render_defaults(&["gatewayCollector.replicas=3"]);
    let gateway = find(&docs, "Deployment", "gateway-collector");
    assert_eq!(gateway["spec"]["replicas"], 3);
    assert!(gateway["spec"]["template"]["spec"]["topologySpreadConstraints"].is_sequence());
    assert!(!docs.iter().any(|d| d["kind"] == "HorizontalPodAutoscaler"));
    find(&docs, "PodDisruptionBudget", "gateway-collector");
    find(&docs, "PodDisruptionBudget", "browser-collector");

    let docs = render_defaults(&["gatewayCollector.autoscaling.enabled=true"]);
    let gateway = find(&docs, "Deployment", "gateway-collector");
    assert!(
        gateway["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = find(&docs, "HorizontalPodAutoscaler", "gateway-collector");
    let metrics: Vec<&str> = hpa["spec"]["metrics"]
        .as_sequence()
        .expect("metrics")
        .iter()
        .filter_map(|m| m["resource"]["name"].as_str())
        .collect();
    assert_eq!(metrics, ["cpu", "memory"]);

    // A k8s resolver in a config gets exactly the EndpointSlice permissions.
    let docs = render_defaults(&[
        "agentCollector.config.exporters.loadbalancing/gateway.resolver.k8s.service=gateway-collector-headless.otel-system",
    ]);
    let role = find(&docs, "ClusterRole", "ollyscale-otel-agent-collector");
    assert_eq!(role["rules"][0]["resources"][0], "endpointslices");
    assert_eq!(
        find(&docs, "DaemonSet", "agent-collector")["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
}

#[test]
fn the_ebpf_agent_gets_minimal_capabilities_and_privileged_still_works() {
    let docs = render_defaults(&["ebpfAgent.enabled=true"]);
    let agent = find(&docs, "DaemonSet", "ebpf-agent");
    let pod = &agent["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let container = &pod["containers"][0];
    assert!(
        container["image"]
            .as_str()
            .is_some_and(|i| i.contains("ollyscale-otel/ebpf-agent"))
    );
    let security = &container["securityContext"];
    assert!(security.get("privileged").is_none());
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_sequence()
        .expect("capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        added,
        [
            "BPF",
            "PERFMON",
            "NET_ADMIN",
            "SYS_PTRACE",
            "DAC_READ_SEARCH",
            "SYS_RESOURCE"
        ]
    );
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    // Raw tracepoints need neither tracefs nor debugfs: only the cgroup
    // tree (pod metadata) comes from the host.
    assert_eq!(mounts, ["/sys/fs/cgroup"]);
    let env = serde_yaml_ng::to_string(&container["env"]).expect("env");
    assert!(env.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && env.contains("OTEL_EBPF_OPEN_PORT"));
    let role = find(&docs, "ClusterRole", "ollyscale-otel-ebpf-agent");
    assert_eq!(role["rules"][0]["resources"][0], "pods");

    let docs = render_defaults(&[
        "ebpfAgent.enabled=true",
        "ebpfAgent.securityContext.privileged=true",
    ]);
    let container =
        &find(&docs, "DaemonSet", "ebpf-agent")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["privileged"], true);
}

/// The browser collector's overlay as YAML.
fn browser_overlay(sets: &[&str]) -> Value {
    let docs = render_defaults(sets);
    let data = &find(&docs, "ConfigMap", "browser-collector")["data"];
    serde_yaml_ng::from_str(data["chart-overlay.yaml"].as_str().expect("overlay")).expect("yaml")
}

#[test]
fn the_browser_gets_the_public_endpoints_protections_and_the_config_still_wins() {
    let overlay = browser_overlay(&[]);
    let http = &overlay["receivers"]["otlp"]["protocols"]["http"];
    assert_eq!(http["max_request_body_size"], 1_048_576);
    assert_eq!(http["accept_text_plain_json"], true);
    assert_eq!(http["rate_limit"]["requests_per_second"], 20);
    assert_eq!(http["limits"]["max_timestamp_skew"], "24h");
    assert_eq!(http["add_client_address"], false);
    assert_eq!(
        http["endpoint"], "0.0.0.0:4318",
        "the config's own endpoint kept"
    );

    // What the config sets itself wins over the protections' default.
    let overlay = browser_overlay(&[
        "browserCollector.config.receivers.otlp.protocols.http.max_request_body_size=2097152",
        "browserCollector.protections.http.add_user_agent=true",
    ]);
    let http = &overlay["receivers"]["otlp"]["protocols"]["http"];
    assert_eq!(http["max_request_body_size"], 2_097_152);
    assert_eq!(http["add_user_agent"], true);

    // Off: the overlay leaves the receiver alone.
    let overlay = browser_overlay(&["browserCollector.protections.enabled=false"]);
    assert!(overlay["receivers"].is_null(), "{overlay:?}");
    // The other collectors never get them.
    let docs = render_defaults(&[]);
    for name in ["agent-collector", "gateway-collector"] {
        let data = &find(&docs, "ConfigMap", name)["data"];
        let overlay: Value =
            serde_yaml_ng::from_str(data["chart-overlay.yaml"].as_str().expect("overlay"))
                .expect("yaml");
        assert!(overlay["receivers"].is_null(), "{name}: {overlay:?}");
    }
}

#[test]
fn every_rendered_collector_config_passes_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (scenario, sets, values) in [
        ("defaults", vec![], None),
        ("the old README's example", vec![], Some(README_EXAMPLE)),
    ] {
        let [(_, helm3), _] = helms();
        let docs =
            documents(&helm(&helm3, "template", "otel-system", &sets, values).expect("render"));
        for (name, binary) in [
            ("agent-collector", "agent-collector"),
            ("gateway-collector", "gateway-collector"),
            ("browser-collector", "browser-collector"),
        ] {
            let data = &find(&docs, "ConfigMap", name)["data"];
            let mut command = Command::new(support::binary(binary));
            command.arg("validate");
            for file in ["collector.yaml", "chart-overlay.yaml"] {
                let path = dir.path().join(format!("{name}-{file}"));
                std::fs::write(&path, data[file].as_str().expect("file")).expect("write");
                command.arg("--config").arg(&path);
            }
            let output = command.output().expect("run validate");
            assert!(
                output.status.success(),
                "{scenario}: {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Every key of values.yaml is in the chart README's values table, so the
/// table cannot fall behind.
#[test]
fn the_chart_readme_lists_every_value() {
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values");
    let readme = std::fs::read_to_string(chart().join("README.md")).expect("chart README");
    fn keys(prefix: &str, value: &Value, out: &mut Vec<String>) {
        // Free-form maps (configs, resources, ...) are documented as a whole.
        const WHOLE: &[&str] = &[
            "config",
            "resources",
            "podAnnotations",
            "env",
            "securityContext",
            "podSecurityContext",
            "templates",
            "sampler",
            "resource",
            "exporter",
            "go",
            "http",
        ];
        match value {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    let k = k.as_str().expect("string key");
                    let path = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if WHOLE.contains(&k) {
                        out.push(path);
                    } else {
                        keys(&path, v, out);
                    }
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut all = Vec::new();
    keys("", &values, &mut all);
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from the chart README's table: {missing:?}"
    );
}
