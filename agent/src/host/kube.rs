//! Kubernetes access through the `kube` client: read the agent's own Node
//! (cordon, Ready condition, kubelet version), cordon and uncordon it with a
//! merge patch that records which upkeep operation cordoned it, drain it through
//! the Eviction API (policy/v1), and read the API server's version for the skew
//! rule.
//!
//! A cordon belongs to the operation its `upkeep.io/cordoned-by` annotation
//! names: an operation uncordons only a cordon of its own, so a cordon set by
//! someone else, or by an explicit `POST /v1/cordon`, outlives a later upgrade.
//!
//! Drain: the node's pods are listed; DaemonSet pods, mirror pods, finished
//! pods and pods matching the skip selector stay; pods with local (emptyDir)
//! storage block unless allowed; the rest are evicted a few at a time. A 429
//! (a disruption budget says not now) is retried with backoff; evicted pods are
//! waited for until they are gone. At the timeout the drain fails naming every
//! pod that blocked and why, or, when asked to force, deletes them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use upkeep_common::Version;
use upkeep_common::ids::OperationId;

use crate::host::BoxFuture;
use crate::host::kubernetes::{
    ContainerObservation, CordonOutcome, DrainOutcome, DrainSettings, KubeError, NodeAccess, NodeObservation,
    ReadyCondition,
};

/// The annotation naming the upkeep operation that cordoned a node.
pub const CORDONED_BY: &str = "upkeep.io/cordoned-by";

/// Pods evicted at once.
const EVICTION_CONCURRENCY: usize = 8;

/// How often a drain looks again at pods that have not left.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// The agent's Kubernetes access for its own node.
#[derive(Clone)]
pub struct KubeNodeAccess {
    client: Client,
    node: String,
    request_timeout: Duration,
}

impl KubeNodeAccess {
    /// Access with the credentials of a kubeconfig file (client certificate,
    /// token or token file; data or file forms), or in-cluster credentials when
    /// `kubeconfig` is `None`.
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        node: &str,
        request_timeout: Duration,
    ) -> Result<Self, KubeError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|e| KubeError::Refused(format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| KubeError::Refused(format!("{}: {e}", path.display())))?
            }
            None => Config::incluster().map_err(|e| KubeError::Refused(format!("in-cluster credentials: {e}")))?,
        };
        config.connect_timeout = Some(request_timeout);
        config.read_timeout = Some(request_timeout);
        config.write_timeout = Some(request_timeout);
        // The drain retries refused evictions itself, counts them, and bounds them by its timeout.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| KubeError::Refused(e.to_string()))?;
        Ok(Self { client, node: node.to_owned(), request_timeout })
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeError> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(KubeError::Unavailable(format!("no answer within {:?}", self.request_timeout))),
        }
    }

    async fn observe_node(&self) -> Result<NodeObservation, KubeError> {
        let node = self.bounded(self.nodes().get(&self.node)).await?;
        Ok(observation_of(&node))
    }

    async fn cordon_node(&self, operation: &OperationId) -> Result<CordonOutcome, KubeError> {
        let node = self.bounded(self.nodes().get(&self.node)).await?;
        let observed = observation_of(&node);
        if observed.unschedulable && !cordoned_by(&observed, operation) {
            return Ok(CordonOutcome::AlreadyCordoned);
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {CORDONED_BY: operation.as_str()}},
            "spec": {"unschedulable": true},
        });
        self.bounded(self.nodes().patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))).await?;
        Ok(CordonOutcome::Cordoned)
    }

    async fn uncordon_node(&self, operation: &OperationId, only_if_ours: bool) -> Result<(), KubeError> {
        let node = self.bounded(self.nodes().get(&self.node)).await?;
        if only_if_ours && !cordoned_by(&observation_of(&node), operation) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {CORDONED_BY: null}},
            "spec": {"unschedulable": false},
        });
        self.bounded(self.nodes().patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))).await?;
        Ok(())
    }

    async fn drain_node(&self, settings: &DrainSettings) -> Result<DrainOutcome, KubeError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let listed =
            self.bounded(pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", self.node)))).await?;
        let skip = parse_selector(settings.skip_pod_selector.as_deref());
        let mut to_evict = Vec::new();
        let mut refused = Vec::new();
        for pod in listed.items {
            match classify_pod(&pod, &skip, settings.allow_local_storage) {
                PodFate::Stays => {}
                PodFate::Blocks(reason) => refused.push(format!("{}: {reason}", pod_key(&pod))),
                PodFate::Evict => to_evict.push(pod),
            }
        }
        if !refused.is_empty() {
            return Err(KubeError::DrainBlocked(refused.join("; ")));
        }
        let deadline = crate::deadline::after(tokio::time::Instant::now(), settings.timeout);
        let evictions = futures_util::stream::iter(to_evict)
            .map(|pod| self.evict_until_gone(pod, settings, deadline))
            .buffer_unordered(EVICTION_CONCURRENCY);
        let results: Vec<EvictionResult> = evictions.collect().await;
        let blocked: Vec<&EvictionResult> = results.iter().filter(|r| r.blocked.is_some()).collect();
        let retries: u32 = results.iter().map(|r| r.retries).sum();
        if blocked.is_empty() {
            return Ok(DrainOutcome::Drained { evicted: results.len(), retries, forced: Vec::new() });
        }
        let names: Vec<String> =
            blocked.iter().map(|r| format!("{} ({})", r.pod, r.blocked.as_deref().unwrap_or("blocked"))).collect();
        if !settings.force_at_timeout {
            return Err(KubeError::DrainBlocked(format!(
                "pods did not leave within {:?}: {}",
                settings.timeout,
                names.join("; ")
            )));
        }
        for result in &blocked {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &result.namespace);
            match self.bounded(api.delete(&result.name, &DeleteParams::default().grace_period(0))).await {
                Ok(_) | Err(KubeError::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(DrainOutcome::Drained { evicted: results.len() - blocked.len(), retries, forced: names })
    }

    async fn evict_until_gone(
        &self,
        pod: Pod,
        settings: &DrainSettings,
        deadline: tokio::time::Instant,
    ) -> EvictionResult {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let mut eviction = serde_json::json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        });
        if let Some(grace) = settings.grace_period {
            eviction["deleteOptions"] = serde_json::json!({"gracePeriodSeconds": grace.as_secs()});
        }
        let eviction_path = format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction");
        let mut result =
            EvictionResult { pod: pod_key(&pod), namespace, name: name.clone(), retries: 0, blocked: None };
        let mut backoff = Duration::from_millis(200);
        loop {
            if tokio::time::Instant::now() >= deadline {
                result.blocked = Some("blocked by a disruption budget until the timeout".to_owned());
                return result;
            }
            match self.bounded(self.post_eviction(&eviction_path, &eviction)).await {
                Ok(_) | Err(KubeError::NotFound) => break,
                Err(KubeError::TooManyRequests) => {
                    result.retries += 1;
                    tokio::time::sleep(backoff.min(deadline.saturating_duration_since(tokio::time::Instant::now())))
                        .await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    result.blocked = Some(error.to_string());
                    return result;
                }
            }
        }
        loop {
            match self.bounded(api.get_opt(&name)).await {
                Ok(None) => return result,
                Ok(Some(current)) if current.metadata.uid != uid => return result,
                Ok(Some(_)) | Err(_) if tokio::time::Instant::now() >= deadline => {
                    result.blocked = Some("evicted but still terminating at the timeout".to_owned());
                    return result;
                }
                _ => tokio::time::sleep(DRAIN_POLL).await,
            }
        }
    }

    /// Posts a policy/v1 Eviction (kube's own helper does not send the delete
    /// options in the field the API server reads, so the grace period would be lost).
    async fn post_eviction(&self, path: &str, eviction: &serde_json::Value) -> Result<serde_json::Value, kube::Error> {
        let body = serde_json::to_vec(eviction).map_err(kube::Error::SerdeError)?;
        let request = hyper::http::Request::post(path)
            .header(hyper::http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(kube::Error::HttpError)?;
        self.client.request::<serde_json::Value>(request).await
    }

    async fn apiserver_version(&self) -> Result<Version, KubeError> {
        let info = self.bounded(self.client.apiserver_version()).await?;
        info.git_version
            .parse()
            .map_err(|e| KubeError::Refused(format!("the API server reports version {:?}: {e}", info.git_version)))
    }
}

/// Whether the Node's cordon annotation names `operation`.
fn cordoned_by(observed: &NodeObservation, operation: &OperationId) -> bool {
    observed.cordoned_by.as_deref() == Some(operation.as_str())
}

/// What a Node object says about the node.
fn observation_of(node: &Node) -> NodeObservation {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|condition| ReadyCondition {
            status: condition.status.clone(),
            last_heartbeat: condition.last_heartbeat_time.as_ref().and_then(|time| {
                let nanos = u32::try_from(time.0.subsec_nanosecond()).unwrap_or(0);
                chrono::DateTime::from_timestamp(time.0.as_second(), nanos)
            }),
            reason: condition.reason.clone().unwrap_or_default(),
        });
    NodeObservation {
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        cordoned_by: node.metadata.annotations.as_ref().and_then(|a| a.get(CORDONED_BY)).cloned(),
        ready,
        kubelet_version: status.and_then(|s| s.node_info.as_ref()).map(|info| info.kubelet_version.clone()),
    }
}

struct EvictionResult {
    pod: String,
    namespace: String,
    name: String,
    retries: u32,
    blocked: Option<String>,
}

/// What a drain does with one pod.
#[derive(Debug, PartialEq, Eq)]
enum PodFate {
    Stays,
    Blocks(String),
    Evict,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}

fn parse_selector(selector: Option<&str>) -> BTreeMap<String, String> {
    selector
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().trim_start_matches('=').to_owned()))
        .collect()
}

fn classify_pod(pod: &Pod, skip: &BTreeMap<String, String>, allow_local_storage: bool) -> PodFate {
    let owned_by_daemon_set = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|owners| owners.iter().any(|owner| owner.kind == "DaemonSet"));
    let mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let finished =
        pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let skipped = !skip.is_empty() && skip.iter().all(|(key, value)| labels.get(key) == Some(value));
    if owned_by_daemon_set || mirror || finished || skipped {
        return PodFate::Stays;
    }
    let local_storage = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|volumes| volumes.iter().any(|v| v.empty_dir.is_some()));
    if local_storage && !allow_local_storage {
        return PodFate::Blocks("has local storage (emptyDir); allow_local_storage is off".to_owned());
    }
    PodFate::Evict
}

fn classify(error: kube::Error) -> KubeError {
    match &error {
        kube::Error::Api(response) if response.code == 429 => KubeError::TooManyRequests,
        kube::Error::Api(response) if response.code == 404 => KubeError::NotFound,
        kube::Error::Api(response) if response.code >= 500 => KubeError::Unavailable(error.to_string()),
        kube::Error::Api(_) => KubeError::Refused(error.to_string()),
        _ => KubeError::Unavailable(error.to_string()),
    }
}

impl NodeAccess for KubeNodeAccess {
    fn configured(&self) -> bool {
        true
    }

    fn observe(&self) -> BoxFuture<'_, Result<Option<NodeObservation>, KubeError>> {
        Box::pin(async move { self.observe_node().await.map(Some) })
    }

    fn cordon<'a>(&'a self, operation: &'a OperationId) -> BoxFuture<'a, Result<CordonOutcome, KubeError>> {
        Box::pin(self.cordon_node(operation))
    }

    fn uncordon<'a>(&'a self, operation: &'a OperationId, only_if_ours: bool) -> BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(self.uncordon_node(operation, only_if_ours))
    }

    fn drain<'a>(&'a self, settings: &'a DrainSettings) -> BoxFuture<'a, Result<DrainOutcome, KubeError>> {
        Box::pin(self.drain_node(settings))
    }

    fn control_plane_version(&self) -> BoxFuture<'_, Result<Option<Version>, KubeError>> {
        Box::pin(async move { self.apiserver_version().await.map(Some) })
    }

    fn static_pod_container<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<ContainerObservation>, KubeError>> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let mirror = self.bounded(pods.get_opt(pod)).await?;
            Ok(mirror.as_ref().and_then(|mirror| container_of(mirror, container)))
        })
    }
}

/// Container `name` of `pod` as its status reports it.
pub fn container_of(pod: &Pod, name: &str) -> Option<ContainerObservation> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|status| status.name == name)?;
    Some(ContainerObservation {
        image: status.image.clone(),
        image_id: status.image_id.clone(),
        ready: status.ready,
        restart_count: u32::try_from(status.restart_count).unwrap_or(0),
    })
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
