//! The fake API server's objects and how each request changes them. Pure: the
//! clock is a parameter, and the HTTP layer only parses and forwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::kube_api::merge::merge_patch;

/// A pod as the test or the simulator scripts it.
#[derive(Debug, Clone)]
pub struct FakePod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it is bound to.
    pub node: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Owned by a DaemonSet.
    pub daemon_set: bool,
    /// A mirror (static) pod.
    pub mirror: bool,
    /// Its phase (`Running`, `Succeeded`, `Failed`).
    pub phase: String,
    /// Uses an emptyDir volume.
    pub local_storage: bool,
    /// Evictions its disruption budget refuses before allowing one (`u32::MAX`: never allows).
    pub budget_refusals: u32,
    /// How long it takes to terminate once evicted.
    pub terminate_after: Duration,
    /// Its `status.containerStatuses`, as a kubelet reports them.
    pub container_statuses: Vec<Value>,
}

impl FakePod {
    /// A plain running pod on `node`.
    pub fn running(namespace: &str, name: &str, node: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: node.to_owned(),
            labels: BTreeMap::new(),
            daemon_set: false,
            mirror: false,
            phase: "Running".to_owned(),
            local_storage: false,
            budget_refusals: 0,
            terminate_after: Duration::ZERO,
            container_statuses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct PodRecord {
    pod: FakePod,
    uid: String,
    evict_attempts: u32,
    terminating_since: Option<Instant>,
}

/// A response: status code and JSON body.
pub type Answer = (u16, Value);

/// The API server's state.
#[derive(Debug, Default)]
pub struct ApiState {
    version: String,
    /// The version each node's kube-apiserver runs, as its kubelet reports it.
    api_servers: BTreeMap<String, String>,
    nodes: BTreeMap<String, Value>,
    pods: Vec<PodRecord>,
    next_uid: u64,
    resource_version: u64,
    /// Every eviction attempt, as `namespace/name`, in order.
    pub eviction_log: Vec<String>,
    /// Every pod deleted directly, as `namespace/name`.
    pub deletion_log: Vec<String>,
    /// Every node patch body received.
    pub patch_log: Vec<Value>,
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Answer {
    let message = message.into();
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 { "Success" } else { "Failure" },
               "message": message, "reason": reason, "code": code}),
    )
}

impl ApiState {
    /// A server reporting `version` (such as `v1.30.2`).
    pub fn new(version: &str) -> Self {
        Self { version: version.to_owned(), ..Self::default() }
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Adds a schedulable, Ready Node whose kubelet reports no version yet
    /// (see [`ApiState::kubelet_started`]).
    pub fn add_node(&mut self, name: &str) {
        let uid = self.uid();
        let rv = self.bump();
        self.nodes.insert(
            name.to_owned(),
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "uid": uid, "resourceVersion": rv, "annotations": {}},
                   "spec": {},
                   "status": {"conditions": [ready_condition("True", "KubeletReady", Utc::now())],
                              "nodeInfo": node_info("")}}),
        );
    }

    /// The node's kubelet (re)started at `at` running `version`: the Node reports
    /// that version and a Ready heartbeat at `at`, as a starting kubelet posts them.
    pub fn kubelet_started(&mut self, name: &str, version: &str, at: DateTime<Utc>) {
        let rv = self.bump();
        if let Some(node) = self.nodes.get_mut(name) {
            node["status"]["nodeInfo"] = node_info(version);
            node["status"]["conditions"] = json!([ready_condition("True", "KubeletReady", at)]);
            node["metadata"]["resourceVersion"] = json!(rv);
        }
    }

    /// Sets the node's Ready condition as the node lifecycle controller or the
    /// kubelet would, with a heartbeat at `at`.
    pub fn set_ready(&mut self, name: &str, status: &str, at: DateTime<Utc>) {
        let rv = self.bump();
        if let Some(node) = self.nodes.get_mut(name) {
            let reason = if status == "True" { "KubeletReady" } else { "NodeStatusUnknown" };
            node["status"]["conditions"] = json!([ready_condition(status, reason, at)]);
            node["metadata"]["resourceVersion"] = json!(rv);
        }
    }

    /// The Node object.
    pub fn node(&self, name: &str) -> Option<&Value> {
        self.nodes.get(name)
    }

    /// Sets a node's `spec.unschedulable` directly (as someone else would).
    pub fn set_unschedulable(&mut self, name: &str, unschedulable: bool) {
        if let Some(node) = self.nodes.get_mut(name) {
            merge_patch(node, &json!({"spec": {"unschedulable": unschedulable}}));
        }
    }

    /// Adds a pod.
    pub fn add_pod(&mut self, pod: FakePod) {
        let uid = self.uid();
        self.pods.push(PodRecord { pod, uid, evict_attempts: 0, terminating_since: None });
    }

    /// Sets the container statuses of mirror pod `namespace/name` on `node`,
    /// creating the pod when kubelet reports it for the first time.
    pub fn report_mirror_pod(&mut self, namespace: &str, name: &str, node: &str, statuses: Vec<Value>) {
        match self.find(namespace, name) {
            Some(index) => self.pods[index].pod.container_statuses = statuses,
            None => {
                let mut pod = FakePod::running(namespace, name, node);
                pod.mirror = true;
                pod.container_statuses = statuses;
                self.add_pod(pod);
            }
        }
    }

    /// The pods that still exist, as `namespace/name`.
    pub fn pod_names(&mut self, now: Instant) -> Vec<String> {
        self.reap(now);
        self.pods.iter().map(|p| format!("{}/{}", p.pod.namespace, p.pod.name)).collect()
    }

    /// Removes pods whose termination time has passed.
    fn reap(&mut self, now: Instant) {
        self.pods.retain(|p| p.terminating_since.is_none_or(|since| now < since + p.pod.terminate_after));
    }

    fn pod_json(record: &PodRecord) -> Value {
        let pod = &record.pod;
        let mut metadata = json!({"name": pod.name, "namespace": pod.namespace, "uid": record.uid,
                                  "labels": pod.labels, "annotations": {}});
        if pod.daemon_set {
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "ds-uid", "controller": true}]);
        }
        if pod.mirror {
            metadata["annotations"] = json!({"kubernetes.io/config.mirror": "mirror"});
        }
        if record.terminating_since.is_some() {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let mut spec =
            json!({"nodeName": pod.node, "containers": [{"name": "main", "image": "registry.invalid/app:1"}]});
        if pod.local_storage {
            spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        }
        let mut status = json!({"phase": pod.phase});
        if !pod.container_statuses.is_empty() {
            status["containerStatuses"] = Value::Array(pod.container_statuses.clone());
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
    }

    /// Answers one request.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
        now: Instant,
    ) -> Answer {
        self.reap(now);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["version"]) => self.version(),
            ("GET", ["api", "v1", "nodes", name]) => match self.nodes.get(*name) {
                Some(node) => (200, node.clone()),
                None => status(404, "NotFound", format!("nodes \"{name}\" not found")),
            },
            ("PATCH", ["api", "v1", "nodes", name]) => self.patch_node(name, content_type, body),
            ("GET", ["api", "v1", "pods"]) => self.list_pods(query),
            ("GET", ["api", "v1", "namespaces", namespace, "pods", name]) => match self.find(namespace, name) {
                Some(index) => (200, Self::pod_json(&self.pods[index])),
                None => status(404, "NotFound", format!("pods \"{name}\" not found")),
            },
            ("POST", ["api", "v1", "namespaces", namespace, "pods", name, "eviction"]) => {
                self.evict(namespace, name, body, now)
            }
            ("DELETE", ["api", "v1", "namespaces", namespace, "pods", name]) => match self.find(namespace, name) {
                Some(index) => {
                    let record = self.pods.remove(index);
                    self.deletion_log.push(format!("{namespace}/{name}"));
                    (200, Self::pod_json(&record))
                }
                None => status(404, "NotFound", format!("pods \"{name}\" not found")),
            },
            _ => status(404, "NotFound", format!("the server could not find the requested resource ({method} {path})")),
        }
    }

    /// Node `node`'s kube-apiserver now runs `version`: `/version` answers the
    /// oldest API server's version, as a careful client must assume behind a
    /// load balancer.
    pub fn report_api_server(&mut self, node: &str, version: &str) {
        self.api_servers.insert(node.to_owned(), version.to_owned());
    }

    fn oldest_api_server(&self) -> &str {
        let parsed = |text: &String| text.parse::<upkeep_common::Version>().ok();
        self.api_servers
            .values()
            .filter_map(|text| parsed(text).map(|version| (version, text)))
            .min_by(|a, b| a.0.cmp(&b.0))
            .map_or(self.version.as_str(), |(_, text)| text.as_str())
    }

    fn version(&self) -> Answer {
        let git_version = self.oldest_api_server();
        let core = git_version.trim_start_matches('v');
        let mut parts = core.split(['.', '+', '-']);
        let major = parts.next().unwrap_or("1").to_owned();
        let minor = parts.next().unwrap_or("0").to_owned();
        (
            200,
            json!({"major": major, "minor": minor, "gitVersion": git_version, "gitCommit": "0000000",
                   "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                   "compiler": "gc", "platform": "linux/amd64"}),
        )
    }

    fn patch_node(&mut self, name: &str, content_type: &str, body: &[u8]) -> Answer {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !matches!(media, "application/merge-patch+json" | "application/strategic-merge-patch+json") {
            return status(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {media:?})"
                ),
            );
        }
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return status(400, "BadRequest", "the patch is not JSON");
        };
        let rv = self.bump();
        let Some(node) = self.nodes.get_mut(name) else {
            return status(404, "NotFound", format!("nodes \"{name}\" not found"));
        };
        merge_patch(node, &patch);
        node["metadata"]["resourceVersion"] = json!(rv);
        self.patch_log.push(patch);
        (200, node.clone())
    }

    fn list_pods(&self, query: &str) -> Answer {
        let decoded = percent_decode(query);
        let node = decoded.split('&').find_map(|pair| pair.strip_prefix("fieldSelector=spec.nodeName="));
        let Some(node) = node else {
            return status(400, "BadRequest", "only fieldSelector=spec.nodeName=NODE is supported");
        };
        let items: Vec<Value> = self.pods.iter().filter(|p| p.pod.node == node).map(Self::pod_json).collect();
        (
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": self.resource_version.to_string()}, "items": items}),
        )
    }

    fn find(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pods.iter().position(|p| p.pod.namespace == namespace && p.pod.name == name)
    }

    fn evict(&mut self, namespace: &str, name: &str, body: &[u8], now: Instant) -> Answer {
        let Ok(eviction) = serde_json::from_slice::<Value>(body) else {
            return status(400, "BadRequest", "the body must be a policy/v1 Eviction");
        };
        let kind_ok = eviction.get("kind").is_none_or(|kind| kind == "Eviction");
        let version_ok = eviction.get("apiVersion").is_none_or(|v| v == "policy/v1" || v == "policy/v1beta1");
        if !kind_ok || !version_ok || eviction["metadata"]["name"] != name {
            return status(400, "BadRequest", "the body must be a policy/v1 Eviction naming the pod");
        }
        self.eviction_log.push(format!("{namespace}/{name}"));
        let Some(index) = self.find(namespace, name) else {
            return status(404, "NotFound", format!("pods \"{name}\" not found"));
        };
        let record = &mut self.pods[index];
        if record.terminating_since.is_some() {
            return status(201, "", "");
        }
        if record.evict_attempts < record.pod.budget_refusals {
            record.evict_attempts = record.evict_attempts.saturating_add(1);
            return status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.");
        }
        record.evict_attempts = record.evict_attempts.saturating_add(1);
        record.terminating_since = Some(now);
        status(201, "", "")
    }
}

/// A Ready condition as the kubelet posts it (times to whole seconds, as the API server keeps them).
fn ready_condition(status: &str, reason: &str, at: DateTime<Utc>) -> Value {
    let time = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({"type": "Ready", "status": status, "reason": reason, "message": format!("kubelet {reason}"),
           "lastHeartbeatTime": time, "lastTransitionTime": time})
}

/// `status.nodeInfo` with every field Kubernetes requires.
fn node_info(kubelet_version: &str) -> Value {
    json!({"kubeletVersion": kubelet_version, "kubeProxyVersion": "", "architecture": "amd64", "bootID": "boot",
           "containerRuntimeVersion": "containerd://2.0.0", "kernelVersion": "6.1.0", "machineID": "machine",
           "operatingSystem": "linux", "osImage": "Simulated Linux", "systemUUID": "uuid"})
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], bytes.get(index + 1..index + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(byte) => {
                    out.push(byte);
                    index += 3;
                }
                None => {
                    out.push(b'%');
                    index += 1;
                }
            },
            (b'+', _) => {
                out.push(b' ');
                index += 1;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
