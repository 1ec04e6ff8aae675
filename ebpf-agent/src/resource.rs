//! The OTLP resource of an instrumented process.

use crate::attributes::{int, string};
use crate::pods::PodIndex;
use crate::process::ProcessInfo;
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::sync::Arc;

/// Pod metadata of a process, when running in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodMetadata {
    /// `k8s.namespace.name`.
    pub(crate) namespace: String,
    /// `k8s.pod.name`.
    pub(crate) pod_name: String,
    /// `k8s.pod.uid`.
    pub(crate) pod_uid: String,
    /// `k8s.node.name`.
    pub(crate) node_name: String,
    /// `k8s.deployment.name`, when a ReplicaSet of a Deployment owns the pod.
    pub(crate) deployment_name: Option<String>,
    /// `k8s.container.name`.
    pub(crate) container_name: Option<String>,
    /// A service name the pod declares (annotation
    /// `resource.opentelemetry.io/service.name`, else label
    /// `app.kubernetes.io/name`).
    pub(crate) service_name: Option<String>,
}

/// What every resource shares.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceSettings {
    /// `service.name` for every process (`OTEL_EBPF_SERVICE_NAME`).
    pub(crate) service_name: Option<String>,
    /// `host.name`.
    pub(crate) host_name: String,
    /// This node's pods, with `kube_metadata` enabled.
    pub(crate) pods: Option<Arc<PodIndex>>,
}

impl ResourceSettings {
    /// Changes whenever a resource built now could differ from one built
    /// before for the same process (the pod index changed).
    pub(crate) fn generation(&self) -> u64 {
        self.pods.as_ref().map_or(0, |p| p.generation())
    }
}

/// The service name of a process: the agent's setting, else the process's
/// `OTEL_SERVICE_NAME`, else what its pod declares, else its executable.
pub(crate) fn service_name(
    settings: &ResourceSettings,
    process: &ProcessInfo,
    pod: Option<&PodMetadata>,
) -> String {
    settings
        .service_name
        .clone()
        .or_else(|| process.service_name_env.clone())
        .or_else(|| pod.and_then(|p| p.service_name.clone()))
        .or_else(|| pod.and_then(|p| p.deployment_name.clone()))
        .unwrap_or_else(|| process.exe_name.clone())
}

/// The resource of a process, with its pod's metadata when the pod index
/// knows its container.
pub(crate) fn resource(settings: &ResourceSettings, process: &ProcessInfo) -> Resource {
    let pod = settings
        .pods
        .as_ref()
        .zip(process.container_id.as_deref())
        .and_then(|(pods, id)| pods.get(id));
    let pod = pod.as_deref();
    let mut attributes = vec![
        string("service.name", service_name(settings, process, pod)),
        int("process.pid", i64::from(process.pid)),
        string("process.executable.name", &process.exe_name),
        string("process.executable.path", &process.exe_path),
        string("host.name", &settings.host_name),
        string("telemetry.sdk.name", "ollyscale-ebpf-agent"),
        string("telemetry.sdk.language", "ebpf"),
    ];
    if let Some(id) = &process.container_id {
        attributes.push(string("container.id", id));
    }
    if let Some(pod) = pod {
        attributes.push(string("k8s.namespace.name", &pod.namespace));
        attributes.push(string("k8s.pod.name", &pod.pod_name));
        attributes.push(string("k8s.pod.uid", &pod.pod_uid));
        attributes.push(string("k8s.node.name", &pod.node_name));
        if let Some(d) = &pod.deployment_name {
            attributes.push(string("k8s.deployment.name", d));
        }
        if let Some(c) = &pod.container_name {
            attributes.push(string("k8s.container.name", c));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// This machine's host name.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_precedence() {
        let mut process = ProcessInfo {
            exe_name: "python3".into(),
            ..Default::default()
        };
        let mut settings = ResourceSettings::default();
        let pod = PodMetadata {
            service_name: Some("from-pod".into()),
            ..Default::default()
        };
        assert_eq!(service_name(&settings, &process, None), "python3");
        assert_eq!(service_name(&settings, &process, Some(&pod)), "from-pod");
        process.service_name_env = Some("from-env".into());
        assert_eq!(service_name(&settings, &process, Some(&pod)), "from-env");
        settings.service_name = Some("from-agent".into());
        assert_eq!(service_name(&settings, &process, Some(&pod)), "from-agent");
    }
}
