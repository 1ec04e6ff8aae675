//! Kubernetes pod metadata for the resources, from the API server: a watch
//! on the pods of this node only (`fieldSelector=spec.nodeName=<node>`),
//! indexed by container ID, which the agent reads from each process's
//! cgroup path.
//!
//! The client comes from `KUBECONFIG` or the pod's service account (kube's
//! config inference). The watch re-lists and retries with backoff on its
//! own; until the first list completes, resources carry `container.id`
//! only.

use crate::resource::PodMetadata;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch as signal;

/// Annotation that names a pod's service (OTel's convention).
const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
/// Label that names a pod's application.
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label a Deployment's ReplicaSets put on their pods.
const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

#[derive(Debug, Default)]
struct Index {
    by_container: HashMap<String, Arc<PodMetadata>>,
    /// Pod uid -> its container IDs, to drop them with the pod.
    containers_of: HashMap<String, Vec<String>>,
}

impl Index {
    fn remove(&mut self, uid: &str) {
        for id in self.containers_of.remove(uid).unwrap_or_default() {
            self.by_container.remove(&id);
        }
    }

    fn insert(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.remove(&uid);
        let mut ids = Vec::new();
        for (container_id, metadata) in containers(pod) {
            self.by_container
                .insert(container_id.clone(), Arc::new(metadata));
            ids.push(container_id);
        }
        self.containers_of.insert(uid, ids);
    }
}

/// The pods of this node, by container ID. Shared by the watch task (the
/// writer) and the resource builders.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    index: RwLock<Index>,
    /// Grows with every change, so cached resources can tell they are stale.
    generation: AtomicU64,
}

impl PodIndex {
    /// The pod a container belongs to.
    pub(crate) fn get(&self, container_id: &str) -> Option<Arc<PodMetadata>> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_container
            .get(container_id)
            .cloned()
    }

    /// Changes whenever the index does.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn change(&self, f: impl FnOnce(&mut Index)) {
        f(&mut self.index.write().unwrap_or_else(|p| p.into_inner()));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// `containerd://<id>` (or `docker://`, `cri-o://`) to `<id>`.
fn strip_runtime(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// The Deployment that owns a pod through a ReplicaSet: the ReplicaSet's
/// name without its `-<pod-template-hash>` suffix.
fn deployment_name(pod: &Pod) -> Option<String> {
    let hash = pod.metadata.labels.as_ref()?.get(TEMPLATE_HASH_LABEL)?;
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "ReplicaSet" && o.controller == Some(true))
        .and_then(|o| o.name.strip_suffix(&format!("-{hash}")))
        .map(str::to_string)
}

/// Every container of `pod` that has an ID, with the metadata its processes get.
fn containers(pod: &Pod) -> Vec<(String, PodMetadata)> {
    let meta = &pod.metadata;
    let base = PodMetadata {
        namespace: meta.namespace.clone().unwrap_or_default(),
        pod_name: meta.name.clone().unwrap_or_default(),
        pod_uid: meta.uid.clone().unwrap_or_default(),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        deployment_name: deployment_name(pod),
        container_name: None,
        service_name: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SERVICE_NAME_ANNOTATION))
            .or_else(|| meta.labels.as_ref().and_then(|l| l.get(NAME_LABEL)))
            .cloned(),
    };
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|c| {
        let id = strip_runtime(c.container_id.as_deref()?);
        (!id.is_empty()).then(|| {
            (
                id.to_string(),
                PodMetadata {
                    container_name: Some(c.name.clone()),
                    ..base.clone()
                },
            )
        })
    })
    .collect()
}

/// Watches the pods of `node` into `index` until `stop` turns true.
pub(crate) async fn watch(node: String, index: Arc<PodIndex>, mut stop: signal::Receiver<bool>) {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(
                error = %e,
                "kube_metadata: no Kubernetes API client (in-cluster service account or KUBECONFIG); resources carry container.id only"
            );
            return;
        }
    };
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let mut listing: Option<Index> = None;
    let log = collector_core::observe::RateLimitedLog::new(Duration::from_secs(30));
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = stop.changed() => return,
        };
        match event {
            None => return,
            Some(Ok(watcher::Event::Init)) => listing = Some(Index::default()),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let Some(listing) = listing.as_mut() {
                    listing.insert(&pod);
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let fresh = listing.take().unwrap_or_default();
                let pods = fresh.containers_of.len();
                index.change(|index| *index = fresh);
                tracing::info!(node = %node, pods, "kube_metadata: pods of this node listed");
            }
            Some(Ok(watcher::Event::Apply(pod))) => index.change(|index| index.insert(&pod)),
            Some(Ok(watcher::Event::Delete(pod))) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    index.change(|index| index.remove(uid));
                }
            }
            Some(Err(e)) => {
                if let Some(suppressed) = log.check() {
                    tracing::warn!(error = %e, suppressed, "kube_metadata: watching pods failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    fn shop_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "shop-7d9f8c6b5-x2x4q",
                "namespace": "demo",
                "uid": "uid-1",
                "labels": {"pod-template-hash": "7d9f8c6b5", "app.kubernetes.io/name": "shop"},
                "annotations": {"resource.opentelemetry.io/service.name": "shop-api"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-7d9f8c6b5", "uid": "rs", "controller": true}]
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "api"}, {"name": "sidecar"}]},
            "status": {"containerStatuses": [
                {"name": "api", "containerID": "containerd://aaa", "image": "", "imageID": "", "ready": true, "restartCount": 0},
                {"name": "sidecar", "containerID": "containerd://bbb", "image": "", "imageID": "", "ready": true, "restartCount": 0}
            ]}
        }))
    }

    #[test]
    fn containers_get_their_pod_deployment_and_service() {
        let found = containers(&shop_pod());
        assert_eq!(found.len(), 2);
        let (id, api) = &found[0];
        assert_eq!(id, "aaa");
        assert_eq!(api.namespace, "demo");
        assert_eq!(api.pod_name, "shop-7d9f8c6b5-x2x4q");
        assert_eq!(api.pod_uid, "uid-1");
        assert_eq!(api.node_name, "node-1");
        assert_eq!(api.deployment_name.as_deref(), Some("shop"));
        assert_eq!(api.container_name.as_deref(), Some("api"));
        assert_eq!(api.service_name.as_deref(), Some("shop-api"));
        assert_eq!(found[1].1.container_name.as_deref(), Some("sidecar"));
    }

    #[test]
    fn no_deployment_without_a_replicaset_owner_and_waiting_containers_are_skipped() {
        let standalone = pod(serde_json::json!({
            "metadata": {"name": "one-off", "namespace": "default", "uid": "uid-2",
                         "labels": {"app.kubernetes.io/name": "batch"}},
            "spec": {"containers": [{"name": "job"}]},
            "status": {"containerStatuses": [
                {"name": "job", "image": "", "imageID": "", "ready": false, "restartCount": 0}
            ]}
        }));
        assert!(containers(&standalone).is_empty(), "no container ID yet");
        assert_eq!(deployment_name(&standalone), None);
    }

    #[test]
    fn the_index_follows_updates_and_deletions() {
        let index = PodIndex::default();
        let before = index.generation();
        index.change(|i| i.insert(&shop_pod()));
        assert!(index.generation() > before);
        assert_eq!(
            index.get("aaa").map(|p| p.pod_uid.clone()).as_deref(),
            Some("uid-1")
        );
        // A restart gives the container a new ID; the old one goes.
        let mut restarted = shop_pod();
        if let Some(statuses) = restarted
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            statuses[0].container_id = Some("containerd://ccc".into());
        }
        index.change(|i| i.insert(&restarted));
        assert!(index.get("aaa").is_none());
        assert!(index.get("ccc").is_some());
        index.change(|i| i.remove("uid-1"));
        assert!(index.get("ccc").is_none() && index.get("bbb").is_none());
    }
}
