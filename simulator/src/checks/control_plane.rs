//! The control plane's checks at the end of a run, from what the machines
//! recorded: no kubelet ever restarted on a version newer than the oldest
//! kube-apiserver running at that moment; each control-plane node's static
//! pods end all at the release's images or all back on the ones it started
//! with (byte for byte), as its outcome and fault say; nothing but the four
//! manifests was ever written into a manifest directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use upkeep_common::Version;
use upkeep_common::image::without_digest;
use upkeep_coordinator::plan::NodeStatus;

use super::Violation;
use crate::control_plane::ControlPlaneEvent;
use crate::static_pods::{self, PodState, STATIC_PODS, manifest_path, tagged_image};

/// One control-plane node as the checks see it at the end.
#[derive(Debug, Clone)]
pub struct ControlPlaneNode {
    /// Its name.
    pub name: String,
    /// Where the coordinator's journal left it.
    pub status: NodeStatus,
    /// Whether its plan gave it a static-pod fault (its static pods must end where they started).
    pub static_pod_fault: bool,
    /// The version it started at.
    pub initial: Version,
    /// Each static pod: its manifest's image beside what runs.
    pub pods: Vec<PodState>,
    /// The manifest directory's files now.
    pub manifests: BTreeMap<PathBuf, Vec<u8>>,
    /// Every path ever written, renamed or restored into the manifest directory.
    pub manifest_writes: Vec<PathBuf>,
    /// How many manifests were restored from a backup.
    pub restores: u32,
}

/// Where a control-plane node's static pods ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticPodsEnd {
    /// Every pod runs the release's image, Ready, as its manifest says.
    AtTarget,
    /// The manifests are the ones it started with, byte for byte, and run Ready.
    AsStarted,
    /// Anything else.
    Mixed,
}

impl ControlPlaneNode {
    fn runs_manifests_ready(&self) -> bool {
        self.pods.iter().all(|pod| match (&pod.manifest_image, &pod.running) {
            (Some(manifest), Some((running, ready))) => manifest == running && *ready,
            _ => false,
        })
    }

    /// Where its static pods ended against `target`.
    pub fn end(&self, target: &Version) -> StaticPodsEnd {
        let at = |version: &Version| {
            STATIC_PODS.iter().all(|pod| {
                self.pods.iter().any(|state| {
                    state.pod == *pod
                        && state.manifest_image.as_deref().map(without_digest) == Some(&tagged_image(pod, version))
                })
            })
        };
        let started: BTreeMap<PathBuf, Vec<u8>> = static_pods::initial_manifests(&self.initial).into_iter().collect();
        if !self.runs_manifests_ready() {
            StaticPodsEnd::Mixed
        } else if at(target) {
            StaticPodsEnd::AtTarget
        } else if self.manifests == started {
            StaticPodsEnd::AsStarted
        } else {
            StaticPodsEnd::Mixed
        }
    }
}

/// The control plane's part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlPlaneReport {
    /// Control-plane nodes whose static pods run the release's images.
    pub static_pods_upgraded: usize,
    /// Control-plane nodes where a manifest was put back from its backup.
    pub static_pods_rolled_back: usize,
    /// Control-plane nodes whose static pods run what they started with.
    pub static_pods_as_started: usize,
    /// kubelet restarts held against the oldest kube-apiserver of their moment.
    pub kubelet_restarts_checked: usize,
    /// Whether no kubelet restarted newer than the oldest kube-apiserver.
    pub skew_held: bool,
    /// The oldest kube-apiserver running at the end.
    pub oldest_api_server: Option<Version>,
}

/// Every kubelet restart on a version newer than the oldest kube-apiserver
/// running at that moment, from the record in order.
pub fn kubelet_skew(events: &[ControlPlaneEvent]) -> Vec<Violation> {
    let mut api_servers: BTreeMap<&str, &Version> = BTreeMap::new();
    let mut violations = Vec::new();
    for event in events {
        match event {
            ControlPlaneEvent::ApiServer { node, version, .. } => {
                api_servers.insert(node, version);
            }
            ControlPlaneEvent::Kubelet { at_ms, node, version } => {
                let Some((oldest_node, oldest)) = api_servers.iter().min_by_key(|(_, version)| **version) else {
                    continue;
                };
                if version > *oldest {
                    violations.push(Violation {
                        check: "kubelet_not_newer_than_api_server",
                        message: format!(
                            "{node}'s kubelet restarted on {version} at {at_ms} ms while {oldest_node}'s \
                             kube-apiserver ran {oldest}"
                        ),
                    });
                }
            }
        }
    }
    violations
}

/// Runs the control plane's checks; the report's part beside them.
pub fn check_control_plane(
    nodes: &[ControlPlaneNode],
    events: &[ControlPlaneEvent],
    target: &Version,
) -> (Vec<Violation>, ControlPlaneReport) {
    let mut violations = kubelet_skew(events);
    let skew_held = violations.is_empty();
    let manifests: Vec<PathBuf> = STATIC_PODS.iter().map(|pod| manifest_path(pod)).collect();
    let mut ends = Vec::with_capacity(nodes.len());
    for node in nodes {
        let end = node.end(target);
        ends.push(end);
        let expected = match (node.static_pod_fault, node.status) {
            (true, NodeStatus::Failed | NodeStatus::Pending) => &[StaticPodsEnd::AsStarted][..],
            (true, _) => &[][..],
            (false, NodeStatus::Patched | NodeStatus::Skipped) => &[StaticPodsEnd::AtTarget][..],
            (false, _) => &[StaticPodsEnd::AtTarget, StaticPodsEnd::AsStarted][..],
        };
        if !expected.contains(&end) {
            violations.push(Violation {
                check: "static_pods_where_expected",
                message: format!(
                    "{} ({:?}{}) ends with its static pods {end:?}: {:?}",
                    node.name,
                    node.status,
                    if node.static_pod_fault { ", static-pod fault" } else { "" },
                    node.pods
                ),
            });
        }
        for stray in node.manifest_writes.iter().filter(|path| !manifests.contains(path)) {
            violations.push(Violation {
                check: "no_stray_manifest",
                message: format!("{}: {} was written into the manifest directory", node.name, stray.display()),
            });
        }
    }
    let oldest_api_server = events
        .iter()
        .fold(BTreeMap::new(), |mut current, event| {
            if let ControlPlaneEvent::ApiServer { node, version, .. } = event {
                current.insert(node.as_str(), version);
            }
            current
        })
        .into_values()
        .min()
        .cloned();
    let report = ControlPlaneReport {
        static_pods_upgraded: ends.iter().filter(|end| **end == StaticPodsEnd::AtTarget).count(),
        static_pods_rolled_back: nodes.iter().filter(|node| node.restores > 0).count(),
        static_pods_as_started: ends.iter().filter(|end| **end == StaticPodsEnd::AsStarted).count(),
        kubelet_restarts_checked: events
            .iter()
            .filter(|event| matches!(event, ControlPlaneEvent::Kubelet { .. }))
            .count(),
        skew_held,
        oldest_api_server,
    };
    (violations, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::static_pods::initial_manifests;

    fn version(text: &str) -> Version {
        text.parse().expect("valid")
    }

    fn api(at_ms: u64, node: &str, v: &str) -> ControlPlaneEvent {
        ControlPlaneEvent::ApiServer { at_ms, node: node.into(), version: version(v) }
    }

    fn kubelet(at_ms: u64, node: &str, v: &str) -> ControlPlaneEvent {
        ControlPlaneEvent::Kubelet { at_ms, node: node.into(), version: version(v) }
    }

    #[test]
    fn a_kubelet_newer_than_the_oldest_api_server_of_its_moment_is_named() {
        let in_order = [
            api(0, "cp-0", "v1.30.2"),
            api(0, "cp-1", "v1.30.2"),
            api(10, "cp-0", "v1.30.3"),
            api(20, "cp-1", "v1.30.3"),
            kubelet(30, "worker-2", "v1.30.3"),
        ];
        assert!(kubelet_skew(&in_order).is_empty());
        let early = [
            api(0, "cp-0", "v1.30.2"),
            api(0, "cp-1", "v1.30.2"),
            api(10, "cp-0", "v1.30.3"),
            kubelet(15, "worker-2", "v1.30.3"),
            api(20, "cp-1", "v1.30.3"),
        ];
        let messages: Vec<String> = kubelet_skew(&early).into_iter().map(|v| v.message).collect();
        assert_eq!(
            messages,
            ["worker-2's kubelet restarted on v1.30.3 at 15 ms while cp-1's kube-apiserver ran v1.30.2"]
        );
        assert!(
            kubelet_skew(&[kubelet(1, "worker-2", "v1.31.0")]).is_empty(),
            "no API server recorded, nothing to hold"
        );
    }

    fn node(at: &str, status: NodeStatus, fault: bool) -> ControlPlaneNode {
        let manifests: BTreeMap<PathBuf, Vec<u8>> = initial_manifests(&version(at)).into_iter().collect();
        let pods = STATIC_PODS
            .iter()
            .map(|pod| {
                let image = tagged_image(pod, &version(at));
                PodState { pod: (*pod).into(), manifest_image: Some(image.clone()), running: Some((image, true)) }
            })
            .collect();
        ControlPlaneNode {
            name: "cp-0".into(),
            status,
            static_pod_fault: fault,
            initial: version("v1.30.2"),
            pods,
            manifests,
            manifest_writes: vec![manifest_path("kube-apiserver")],
            restores: 0,
        }
    }

    #[test]
    fn static_pods_end_where_the_outcome_and_fault_say() {
        let target = version("v1.31.0");
        let (clean, report) = check_control_plane(
            &[node("v1.31.0", NodeStatus::Patched, false), node("v1.30.2", NodeStatus::Failed, true)],
            &[],
            &target,
        );
        assert!(clean.is_empty(), "{clean:?}");
        assert_eq!((report.static_pods_upgraded, report.static_pods_as_started), (1, 1));

        let mut stray = node("v1.31.0", NodeStatus::Patched, false);
        stray.manifest_writes.push(PathBuf::from("/etc/kubernetes/manifests/kube-apiserver.yaml.bak"));
        let mut not_ready = node("v1.30.2", NodeStatus::Failed, true);
        not_ready.pods[1].running = Some((tagged_image("kube-apiserver", &target), false));
        let mut edited = node("v1.30.2", NodeStatus::Failed, true);
        edited.manifests.insert(manifest_path("etcd"), b"edited".to_vec());
        let old_but_patched = node("v1.30.2", NodeStatus::Patched, false);
        let (violations, _) = check_control_plane(&[stray, not_ready, edited, old_but_patched], &[], &target);
        let checks: Vec<&str> = violations.iter().map(|v| v.check).collect();
        assert_eq!(
            checks,
            [
                "no_stray_manifest",
                "static_pods_where_expected",
                "static_pods_where_expected",
                "static_pods_where_expected"
            ]
        );
    }
}
