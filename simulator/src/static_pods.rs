//! The static pods of a simulated control-plane machine: the four kubeadm
//! manifests it starts with, the release's images pinned by digest, and a
//! simulated kubelet that runs every file of the in-memory manifest
//! directory. A changed manifest is picked up after the node's step latency;
//! each container is reported as its mirror pod would (image, the image's
//! digest in `imageID`, Ready, restart count). Under the crash-looping fault,
//! every image the machine did not start with keeps restarting, never Ready.
//!
//! etcd has its own version line: Kubernetes 1.M runs etcd `3.5.(M-15)-0`
//! (1.30 runs 3.5.15-0, 1.31 runs 3.5.16-0), as kubeadm pins one etcd per minor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use upkeep_agent::host::kubernetes::ContainerObservation;
use upkeep_common::Version;
use upkeep_common::api::ImageArtifact;
use upkeep_common::image::{repository_of, version_of_image, without_digest};

use crate::control_plane::ControlPlaneLog;
use crate::kube_api::read_pod;

/// The kubelet's manifest directory on every control-plane machine.
pub const MANIFEST_DIR: &str = "/etc/kubernetes/manifests";

/// The static pods of a control-plane machine, in the order kubeadm upgrades them.
pub const STATIC_PODS: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The API server's `/readyz`, as the control-plane agents' config names it.
pub const API_SERVER_READYZ: &str = "https://127.0.0.1:6443/readyz";

/// The API server's `/version`, as the control-plane agents' config names it.
pub const API_SERVER_VERSION: &str = "https://127.0.0.1:6443/version";

/// How often a crash-looping container restarts.
const CRASH_EVERY: Duration = Duration::from_millis(100);

/// Where `pod`'s manifest lives.
pub fn manifest_path(pod: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join(format!("{pod}.yaml"))
}

/// The etcd version kubeadm runs with Kubernetes `kubernetes` (see the module doc).
pub fn etcd_version(kubernetes: &Version) -> String {
    format!("3.5.{}-0", kubernetes.minor().saturating_sub(15))
}

/// `pod`'s image by tag for Kubernetes `version`: `registry.k8s.io/POD:TAG`.
pub fn tagged_image(pod: &str, version: &Version) -> String {
    let tag = match pod {
        "etcd" => etcd_version(version),
        _ => format!("v{}.{}.{}", version.major(), version.minor(), version.patch()),
    };
    format!("registry.k8s.io/{pod}:{tag}")
}

/// The simulated registry's content digest of a tagged image (hex).
fn content_digest(tagged: &str) -> String {
    Sha256::digest(tagged.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The release's static-pod images for Kubernetes `version`, pinned by digest.
pub fn release_images(version: &Version) -> Vec<ImageArtifact> {
    STATIC_PODS
        .iter()
        .map(|pod| {
            let tagged = tagged_image(pod, version);
            ImageArtifact {
                component: pod.parse().expect("a static pod's name is a valid component name"),
                image: format!("{tagged}@sha256:{}", content_digest(&tagged))
                    .parse()
                    .expect("a tag and a digest make a pinned image"),
                remove_flags: Vec::new(),
            }
        })
        .collect()
}

/// The id a container runtime gives `image`: its repository and content
/// digest (the pinned one, or the simulated registry's for a tag alone).
pub fn runtime_image_id(image: &str) -> String {
    let digest = image.split_once("@sha256:").map_or_else(|| content_digest(image), |(_, digest)| digest.to_owned());
    format!("{}@sha256:{digest}", repository_of(image))
}

/// A manifest of `pod` running `image` with `flags`, as kubeadm writes one.
pub fn manifest(pod: &str, image: &str, flags: &[&str]) -> String {
    let flags: String = flags.iter().map(|flag| format!("    - {flag}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: {pod}\n    tier: control-plane\n  name: {pod}\n  \
         namespace: kube-system\nspec:\n  containers:\n  - command:\n    - {pod}\n{flags}    image: {image}\n    \
         imagePullPolicy: IfNotPresent\n    name: {pod}\n  hostNetwork: true\n  priorityClassName: system-node-critical\nstatus: {{}}\n"
    )
}

/// The four manifests of a control-plane machine at Kubernetes `version`, by path.
pub fn initial_manifests(version: &Version) -> Vec<(PathBuf, Vec<u8>)> {
    STATIC_PODS
        .iter()
        .map(|pod| (manifest_path(pod), manifest(pod, &tagged_image(pod, version), &["--v=2"]).into_bytes()))
        .collect()
}

/// A container the simulated kubelet runs.
#[derive(Debug, Clone)]
struct Container {
    namespace: String,
    name: String,
    image: String,
    started: Instant,
    crash_loops: bool,
}

impl Container {
    fn observation(&self, now: Instant) -> ContainerObservation {
        let restarts = if self.crash_loops {
            let crashes = now.saturating_duration_since(self.started).as_millis() / CRASH_EVERY.as_millis();
            u32::try_from(crashes).unwrap_or(u32::MAX).saturating_add(1)
        } else {
            0
        };
        ContainerObservation {
            image: self.image.clone(),
            image_id: runtime_image_id(&self.image),
            ready: !self.crash_loops,
            restart_count: restarts,
        }
    }
}

/// One static pod at the end of a run, as the machine holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// The pod.
    pub pod: String,
    /// The image its manifest names, if the manifest is there and readable.
    pub manifest_image: Option<String>,
    /// The image the kubelet runs, and whether Ready.
    pub running: Option<(String, bool)>,
}

/// The simulated kubelet's static pods on one machine.
pub struct StaticPodKubelet {
    node: String,
    pickup: Duration,
    crash_loops: bool,
    initial: Vec<String>,
    running: Mutex<BTreeMap<String, Container>>,
    log: Arc<ControlPlaneLog>,
}

impl StaticPodKubelet {
    /// The kubelet of `node` whose manifests name `initial` images; it picks
    /// changes up after `pickup`; under `crash_loops` any other image crash-loops.
    pub fn new(node: &str, pickup: Duration, crash_loops: bool, initial: &Version, log: Arc<ControlPlaneLog>) -> Self {
        Self {
            node: node.to_owned(),
            pickup,
            crash_loops,
            initial: STATIC_PODS.iter().map(|pod| tagged_image(pod, initial)).collect(),
            running: Mutex::new(BTreeMap::new()),
            log,
        }
    }

    fn running(&self) -> MutexGuard<'_, BTreeMap<String, Container>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long after a manifest changes the kubelet acts on it.
    pub fn pickup(&self) -> Duration {
        self.pickup
    }

    /// One look at the manifest directory's files (path and bytes): starts
    /// what is new or changed, stops what went, and records what it started.
    pub fn sync<'a>(&self, files: impl Iterator<Item = (&'a PathBuf, &'a Vec<u8>)>) {
        let mut found = BTreeMap::new();
        for (path, bytes) in files {
            let hidden = path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.'));
            if path.parent() != Some(Path::new(MANIFEST_DIR)) || hidden {
                continue;
            }
            if let Some((name, namespace, _, image)) = std::str::from_utf8(bytes).ok().and_then(read_pod) {
                found.insert(name, (namespace, image));
            }
        }
        let now = Instant::now();
        let mut running = self.running();
        running.retain(|name, _| found.contains_key(name));
        for (name, (namespace, image)) in found {
            if running.get(&name).is_some_and(|container| container.image == image) {
                continue;
            }
            let crash_loops = self.crash_loops && !self.initial.iter().any(|initial| initial == without_digest(&image));
            if name == "kube-apiserver"
                && let Some(version) = version_of_image(&image)
            {
                self.log.api_server_started(&self.node, version);
            }
            if name == "etcd" {
                self.log.etcd_member(&self.node, !crash_loops);
            }
            running.insert(name.clone(), Container { namespace, name, image, started: now, crash_loops });
        }
    }

    /// The container of mirror pod `mirror_pod` (`NAME-NODE`) in `namespace`, if it runs.
    pub fn container(&self, namespace: &str, mirror_pod: &str, container: &str) -> Option<ContainerObservation> {
        let running = self.running();
        let pod = running.values().find(|pod| {
            pod.namespace == namespace && format!("{}-{}", pod.name, self.node) == mirror_pod && pod.name == container
        })?;
        Some(pod.observation(Instant::now()))
    }

    /// The kube-apiserver's version while it runs Ready.
    pub fn api_server(&self) -> Result<Version, String> {
        let running = self.running();
        let Some(pod) = running.get("kube-apiserver") else { return Err("no kube-apiserver runs".to_owned()) };
        if pod.crash_loops {
            return Err(format!("{} is not ready", pod.image));
        }
        version_of_image(&pod.image).ok_or_else(|| format!("{} has no version tag", pod.image))
    }

    /// Every static pod: the image its manifest names beside what runs.
    pub fn pods(&self, files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<PodState> {
        let running = self.running();
        STATIC_PODS
            .iter()
            .map(|pod| PodState {
                pod: (*pod).to_owned(),
                manifest_image: files
                    .get(&manifest_path(pod))
                    .and_then(|bytes| std::str::from_utf8(bytes).ok().and_then(read_pod))
                    .map(|(_, _, _, image)| image),
                running: running.get(*pod).map(|container| (container.image.clone(), !container.crash_loops)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        text.parse().expect("valid")
    }

    #[test]
    fn a_release_pins_each_image_and_etcd_follows_its_own_line() {
        let images = release_images(&version("v1.31.2"));
        let texts: Vec<&str> = images.iter().map(|image| without_digest(image.image.as_str())).collect();
        assert_eq!(
            texts,
            [
                "registry.k8s.io/etcd:3.5.16-0",
                "registry.k8s.io/kube-apiserver:v1.31.2",
                "registry.k8s.io/kube-controller-manager:v1.31.2",
                "registry.k8s.io/kube-scheduler:v1.31.2"
            ]
        );
        assert_eq!(tagged_image("etcd", &version("v1.30.9")), "registry.k8s.io/etcd:3.5.15-0");
    }

    #[test]
    fn the_kubelet_runs_what_the_directory_holds_and_reports_the_digest() {
        let log = Arc::new(ControlPlaneLog::default());
        let kubelet = StaticPodKubelet::new("cp-0", Duration::ZERO, true, &version("v1.30.2"), log.clone());
        let mut files: BTreeMap<PathBuf, Vec<u8>> = initial_manifests(&version("v1.30.2")).into_iter().collect();
        files.insert(PathBuf::from("/etc/kubernetes/upkeep-staged/kube-apiserver.yaml"), b"not run".to_vec());
        kubelet.sync(files.iter());
        let old = kubelet.container("kube-system", "kube-apiserver-cp-0", "kube-apiserver").expect("runs");
        assert!(old.ready);
        assert_eq!(kubelet.api_server(), Ok(version("v1.30.2")));
        assert_eq!(kubelet.pods(&files).iter().filter(|pod| pod.running.is_some()).count(), 4);

        let new = release_images(&version("v1.30.3"))[1].image.as_str().to_owned();
        files.insert(manifest_path("kube-apiserver"), manifest("kube-apiserver", &new, &["--v=2"]).into_bytes());
        kubelet.sync(files.iter());
        let crashing = kubelet.container("kube-system", "kube-apiserver-cp-0", "kube-apiserver").expect("runs");
        let digest = new.split_once("@sha256:").expect("pinned").1;
        assert_eq!(crashing.image_id, format!("registry.k8s.io/kube-apiserver@sha256:{digest}"));
        assert!(!crashing.ready, "a new image crash-loops under the fault");
        assert!(kubelet.api_server().is_err());
        assert_eq!(log.oldest_api_server(), Some(version("v1.30.3")));

        files.remove(&manifest_path("kube-scheduler"));
        kubelet.sync(files.iter());
        assert!(kubelet.container("kube-system", "kube-scheduler-cp-0", "kube-scheduler").is_none());
    }
}
