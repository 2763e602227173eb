//! Kubernetes access for the node: read its Node, cordon, uncordon and drain.
//! Without a `[kubernetes]` table in the config every call answers
//! `NotConfigured` (or `None`) and the engine records the step as Skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};

use upkeep_common::Version;
use upkeep_common::ids::OperationId;

use crate::host::BoxFuture;

/// What cordoning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CordonOutcome {
    /// upkeep cordoned the node (and recorded that it did).
    Cordoned,
    /// The node was already cordoned by someone else: it stays so afterwards.
    AlreadyCordoned,
    /// No Kubernetes access is configured.
    NotConfigured,
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every pod that had to leave left (or was deleted, when forced).
    Drained {
        /// How many pods were evicted.
        evicted: usize,
        /// Evictions a disruption budget refused before it allowed them.
        retries: u32,
        /// Pods deleted at the timeout because the drain was forced, with why they blocked.
        forced: Vec<String>,
    },
    /// No Kubernetes access is configured.
    NotConfigured,
}

/// Drain settings after request options and config defaults are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long pods may take to leave.
    pub timeout: Duration,
    /// Grace period for each evicted pod.
    pub grace_period: Option<Duration>,
    /// Whether pods with local storage may be evicted.
    pub allow_local_storage: bool,
    /// A label selector of pods to leave in place.
    pub skip_pod_selector: Option<String>,
    /// Delete blocking pods at the timeout instead of failing.
    pub force_at_timeout: bool,
}

/// The node's Ready condition as the Node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCondition {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the kubelet last posted the condition (`lastHeartbeatTime`).
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The kubelet's reason, such as `KubeletReady` (may be empty).
    pub reason: String,
}

impl ReadyCondition {
    /// Whether the condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What the node's Node object says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeObservation {
    /// `spec.unschedulable`: the node is cordoned, by whoever did it.
    pub unschedulable: bool,
    /// The `upkeep.io/cordoned-by` annotation: the upkeep operation that cordoned it.
    pub cordoned_by: Option<String>,
    /// The Ready condition, when the Node has one.
    pub ready: Option<ReadyCondition>,
    /// `status.nodeInfo.kubeletVersion`, as the running kubelet reports it.
    pub kubelet_version: Option<String>,
}

/// A static pod's running container, as its mirror pod's
/// `status.containerStatuses` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerObservation {
    /// The image the container was started from, as the runtime names it.
    pub image: String,
    /// The image's id, which carries the content digest (`...@sha256:...`).
    pub image_id: String,
    /// Whether the container is Ready.
    pub ready: bool,
    /// How many times kubelet restarted it.
    pub restart_count: u32,
}

/// Why a Kubernetes call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeError {
    /// The API server could not be reached.
    #[error("Kubernetes API server unavailable: {0}")]
    Unavailable(String),
    /// Pods would not leave in time.
    #[error("drain blocked: {0}")]
    DrainBlocked(String),
    /// The API server refused the request.
    #[error("Kubernetes API refused the request: {0}")]
    Refused(String),
    /// A disruption budget refused an eviction for now (429).
    #[error("a disruption budget refused the eviction")]
    TooManyRequests,
    /// The object does not exist (404).
    #[error("not found")]
    NotFound,
}

/// The node's Kubernetes API.
pub trait NodeAccess: Send + Sync {
    /// Whether Kubernetes access is configured at all.
    fn configured(&self) -> bool;
    /// Reads the node's Node object (`None` without Kubernetes access).
    fn observe(&self) -> BoxFuture<'_, Result<Option<NodeObservation>, KubeError>>;
    /// Marks the node unschedulable, recording `operation` as the cordoner; a
    /// node already cordoned by anyone else (another operation included) is
    /// left as it is and reported `AlreadyCordoned`.
    fn cordon<'a>(&'a self, operation: &'a OperationId) -> BoxFuture<'a, Result<CordonOutcome, KubeError>>;
    /// Marks the node schedulable again; with `only_if_ours`, only if its
    /// cordon records `operation` as the cordoner.
    fn uncordon<'a>(&'a self, operation: &'a OperationId, only_if_ours: bool) -> BoxFuture<'a, Result<(), KubeError>>;
    /// Evicts the node's pods.
    fn drain<'a>(&'a self, settings: &'a DrainSettings) -> BoxFuture<'a, Result<DrainOutcome, KubeError>>;
    /// The API server's version (`None` without Kubernetes access).
    fn control_plane_version(&self) -> BoxFuture<'_, Result<Option<Version>, KubeError>>;
    /// Container `container` of the mirror pod `namespace/pod` (`None` without
    /// Kubernetes access, or while the pod or container is not reported).
    fn static_pod_container<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<ContainerObservation>, KubeError>>;
}

/// No Kubernetes access: cordon and drain are skipped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKubernetes;

impl NodeAccess for NoKubernetes {
    fn configured(&self) -> bool {
        false
    }

    fn observe(&self) -> BoxFuture<'_, Result<Option<NodeObservation>, KubeError>> {
        Box::pin(async { Ok(None) })
    }

    fn cordon<'a>(&'a self, _operation: &'a OperationId) -> BoxFuture<'a, Result<CordonOutcome, KubeError>> {
        Box::pin(async { Ok(CordonOutcome::NotConfigured) })
    }

    fn uncordon<'a>(
        &'a self,
        _operation: &'a OperationId,
        _only_if_ours: bool,
    ) -> BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async { Ok(()) })
    }

    fn control_plane_version(&self) -> BoxFuture<'_, Result<Option<Version>, KubeError>> {
        Box::pin(async { Ok(None) })
    }

    fn drain<'a>(&'a self, _settings: &'a DrainSettings) -> BoxFuture<'a, Result<DrainOutcome, KubeError>> {
        Box::pin(async { Ok(DrainOutcome::NotConfigured) })
    }

    fn static_pod_container<'a>(
        &'a self,
        _namespace: &'a str,
        _pod: &'a str,
        _container: &'a str,
    ) -> BoxFuture<'a, Result<Option<ContainerObservation>, KubeError>> {
        Box::pin(async { Ok(None) })
    }
}
