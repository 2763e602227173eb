//! `[kubernetes]`: access to the API server and the drain defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// Kubernetes access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The kubeconfig file with the agent's credentials; `None` means the
    /// in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Time allowed for one call to the API server.
    pub request_timeout: Duration,
    /// Grace period given to each evicted pod unless a request sets one.
    pub drain_grace_period: Option<Duration>,
    /// Whether pods with local (emptyDir) storage may be evicted unless a request says.
    pub drain_allow_local_storage: bool,
    /// A label selector (`key=value,...`) of pods a drain leaves in place unless a request sets one.
    pub drain_skip_pod_selector: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    in_cluster: bool,
    request_timeout_secs: Option<u64>,
    drain_grace_period_secs: Option<u64>,
    #[serde(default)]
    drain_allow_local_storage: bool,
    drain_skip_pod_selector: Option<String>,
}

pub(super) fn validate_kubernetes(kubernetes: RawKubernetes, problems: &mut Problems) -> Option<KubernetesConfig> {
    let kubeconfig = match (kubernetes.kubeconfig, kubernetes.in_cluster) {
        (Some(_), true) => {
            problems.add("kubernetes.in_cluster", "set kubeconfig or in_cluster = true, not both");
            return None;
        }
        (None, true) => None,
        (path, false) => Some(problems.absolute_path("kubernetes.kubeconfig", path)?),
    };
    let request_timeout = problems.seconds(
        "kubernetes.request_timeout_secs",
        kubernetes.request_timeout_secs,
        Duration::from_secs(10),
        (1, 300),
    );
    let drain_grace_period = kubernetes
        .drain_grace_period_secs
        .map(|secs| problems.seconds("kubernetes.drain_grace_period_secs", Some(secs), Duration::ZERO, (0, 86_400)));
    Some(KubernetesConfig {
        kubeconfig,
        request_timeout,
        drain_grace_period,
        drain_allow_local_storage: kubernetes.drain_allow_local_storage,
        drain_skip_pod_selector: kubernetes.drain_skip_pod_selector,
    })
}
