//! The simulated host behind a fake node: its files, service manager, version
//! probe, health check and Kubernetes access live in memory, with the node's
//! planned fault and step latency. Everything above it (server, authorization,
//! engine, store format) is the real agent.
//!
//! The simulated Node behaves as a real one does for the agent: its cordon
//! records the operation that set it, and a kubelet restart makes it report the
//! installed kubelet's version with a fresh Ready heartbeat. A control-plane
//! machine also runs its static pods from its in-memory manifest directory
//! ([`crate::static_pods`]); every machine reports its kubelet restarts, and
//! control-plane machines their API servers and etcd members, to the fleet's
//! [`ControlPlaneLog`], from which the API server's version and etcd's health
//! are answered.

mod etcd;
mod files;
mod kube;
mod probes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use upkeep_agent::host::Host;
use upkeep_common::Version;
use upkeep_common::ids::Sha256 as Sha256Digest;

use crate::availability::Unavailability;
use crate::control_plane::ControlPlaneLog;
use crate::faults::{FaultKind, NodePlan};
use crate::static_pods::{self, MANIFEST_DIR, PodState, StaticPodKubelet};

/// The longest a simulated kubelet waits before acting on a changed manifest,
/// whatever the node's step latency (the agent waits for the new container
/// within its PostCheck timeout).
const MAX_PICKUP: Duration = Duration::from_millis(500);

/// The bytes of a simulated kubelet binary for `version`.
pub fn binary_for(version: &Version) -> Vec<u8> {
    format!("#!sim kubelet {version}\n").into_bytes()
}

/// Artifacts every node can fetch, by source URL.
pub type ArtifactStore = Arc<BTreeMap<String, Vec<u8>>>;

/// The kubelet artifact for `target` (as the coordinator sends it) and the
/// store every simulated machine fetches it from.
pub fn target_artifact(target: &Version) -> (upkeep_common::api::Artifact, ArtifactStore) {
    let bytes = binary_for(target);
    let source = format!("file:///sim/artifacts/kubelet-{target}");
    let artifact = upkeep_common::api::Artifact {
        component: "kubelet".parse().expect("kubelet is a valid component name"),
        source: source.clone(),
        sha256: digest(&bytes),
        signature: None,
    };
    (artifact, Arc::new([(source, bytes)].into_iter().collect()))
}

/// The simulated Node object.
#[derive(Debug, Clone)]
struct SimNode {
    unschedulable: bool,
    cordoned_by: Option<String>,
    kubelet_version: Option<Version>,
    heartbeat: DateTime<Utc>,
}

/// One simulated machine: its disk, service, Kubernetes Node and, on the
/// control plane, its static pods.
pub struct Machine {
    files: Mutex<BTreeMap<PathBuf, Vec<u8>>>,
    binary: PathBuf,
    plan: NodePlan,
    artifacts: ArtifactStore,
    target: Version,
    node: Mutex<SimNode>,
    swaps: AtomicU32,
    restarts: AtomicU32,
    delayed_ms: AtomicU64,
    crash_armed: AtomicBool,
    hang_armed: AtomicBool,
    unavailability: Option<(Arc<Unavailability>, usize)>,
    fleet: Option<(String, Arc<ControlPlaneLog>)>,
    static_pods: Option<StaticPodKubelet>,
    manifest_writes: Mutex<Vec<PathBuf>>,
    manifest_restores: AtomicU32,
    /// Woken when the agent crashed and must be restarted.
    pub crashed: Notify,
}

impl Machine {
    /// A machine with `binary` holding `installed`, its plan, and the rollout target.
    pub fn new(binary: &Path, installed: &Version, plan: NodePlan, artifacts: ArtifactStore, target: Version) -> Self {
        let mut files = BTreeMap::new();
        files.insert(binary.to_path_buf(), binary_for(installed));
        let crash = plan.fault == Some(FaultKind::AgentCrash);
        let hang = plan.fault == Some(FaultKind::HungStep);
        Self {
            files: Mutex::new(files),
            binary: binary.to_path_buf(),
            plan,
            artifacts,
            target,
            node: Mutex::new(SimNode {
                unschedulable: false,
                cordoned_by: None,
                kubelet_version: Some(installed.clone()),
                heartbeat: Utc::now(),
            }),
            swaps: AtomicU32::new(0),
            restarts: AtomicU32::new(0),
            delayed_ms: AtomicU64::new(0),
            crash_armed: AtomicBool::new(crash),
            hang_armed: AtomicBool::new(hang),
            unavailability: None,
            fleet: None,
            static_pods: None,
            manifest_writes: Mutex::new(Vec::new()),
            manifest_restores: AtomicU32::new(0),
            crashed: Notify::new(),
        }
    }

    /// The same machine, reporting every cordon and uncordon of its Node to
    /// `unavailability` as node `index`.
    pub fn reporting_to(self, unavailability: Arc<Unavailability>, index: usize) -> Self {
        Self { unavailability: Some((unavailability, index)), ..self }
    }

    /// The same machine as node `name` of a fleet whose control plane `log`
    /// records; a control-plane machine also runs the four static pods of
    /// `installed` from its manifest directory.
    pub fn in_fleet(self, name: &str, log: Arc<ControlPlaneLog>, control_plane: bool, installed: &Version) -> Self {
        let static_pods = control_plane.then(|| {
            let crash_loops = self.plan.fault == Some(FaultKind::ImageCrashLoops);
            let pickup = self.plan.step_latency().min(MAX_PICKUP);
            StaticPodKubelet::new(name, pickup, crash_loops, installed, log.clone())
        });
        if let Some(kubelet) = &static_pods {
            let mut files = self.files();
            files.extend(static_pods::initial_manifests(installed));
            kubelet.sync(files.iter());
        }
        Self { fleet: Some((name.to_owned(), log)), static_pods, ..self }
    }

    /// Every static pod of a control-plane machine: its manifest's image
    /// beside what the kubelet runs (empty on a worker).
    pub fn static_pods(&self) -> Vec<PodState> {
        self.static_pods.as_ref().map(|kubelet| kubelet.pods(&self.files())).unwrap_or_default()
    }

    /// The manifests of a control-plane machine, by path.
    pub fn manifests(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let files = self.files();
        files.iter().filter(|(path, _)| in_manifest_dir(path)).map(|(p, b)| (p.clone(), b.clone())).collect()
    }

    /// Every path a file was ever written, renamed or restored to inside the manifest directory.
    pub fn manifest_writes(&self) -> Vec<PathBuf> {
        self.manifest_writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// How many times a backup manifest was restored into the manifest directory.
    pub fn manifest_restores(&self) -> u32 {
        self.manifest_restores.load(Ordering::Relaxed)
    }

    /// A file landed at `path` (by `restore` when `restored`): when inside the
    /// manifest directory it is recorded, and the kubelet looks again after its pickup delay.
    fn landed(self: &Arc<Self>, path: &Path, restored: bool) {
        if !in_manifest_dir(path) {
            return;
        }
        self.manifest_writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(path.to_path_buf());
        if restored {
            self.manifest_restores.fetch_add(1, Ordering::Relaxed);
        }
        self.manifest_changed();
    }

    /// Schedules the kubelet's next look at the manifest directory. The
    /// node's upgrade waits for it, so it counts as planned latency.
    fn manifest_changed(self: &Arc<Self>) {
        let Some(kubelet) = &self.static_pods else { return };
        let (machine, pickup) = (self.clone(), kubelet.pickup());
        self.delayed_ms.fetch_add(u64::try_from(pickup.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::time::sleep(pickup).await;
            if let Some(kubelet) = &machine.static_pods {
                kubelet.sync(machine.files().iter());
            }
        });
    }

    /// Tells the unavailability counter that the Node's cordon changed.
    fn report_cordoned(&self, cordoned: bool) {
        if let Some((unavailability, index)) = &self.unavailability {
            unavailability.set_cordoned(*index, cordoned);
        }
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Vec<u8>>> {
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn node(&self) -> MutexGuard<'_, SimNode> {
        self.node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The installed binary's bytes.
    pub fn installed(&self) -> Vec<u8> {
        self.files().get(&self.binary).cloned().unwrap_or_default()
    }

    /// Whether the Node is cordoned.
    pub fn cordoned(&self) -> bool {
        self.node().unschedulable
    }

    /// The kubelet (re)starts: the Node reports the installed version and a heartbeat.
    fn kubelet_started(&self) {
        let version = Version::find_in_text(&String::from_utf8_lossy(&self.installed()));
        let mut node = self.node();
        node.kubelet_version = version.clone();
        node.heartbeat = Utc::now();
        drop(node);
        if let (Some((name, log)), Some(version)) = (&self.fleet, version) {
            log.kubelet_started(name, version);
        }
    }

    /// How many times a new binary was renamed into place.
    pub fn swaps(&self) -> u32 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// How many times the service was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The node's plan.
    pub fn plan(&self) -> &NodePlan {
        &self.plan
    }

    fn fault(&self) -> Option<FaultKind> {
        self.plan.fault
    }

    async fn step_delay(&self) {
        if self.plan.step_latency_ms > 0 {
            self.delayed_ms.fetch_add(self.plan.step_latency_ms, Ordering::Relaxed);
            tokio::time::sleep(self.plan.step_latency()).await;
        }
    }

    /// The step latencies the machine has been planned to wait, summed over
    /// the steps that ran, and its kubelet's looks at changed manifests.
    pub fn planned_delay_ms(&self) -> u64 {
        self.delayed_ms.load(Ordering::Relaxed)
    }

    fn runs_new_binary(&self) -> bool {
        self.installed() == binary_for(&self.target)
    }

    /// The host made of this machine's parts.
    pub fn host(self: &Arc<Self>) -> Host {
        Host {
            versions: Arc::new(probes::SimVersions(self.clone())),
            facts: Arc::new(probes::SimFacts),
            files: Arc::new(files::SimFiles(self.clone())),
            services: Arc::new(probes::SimServices(self.clone())),
            health: Arc::new(probes::SimHealth(self.clone())),
            images: Arc::new(probes::SimImages(self.clone())),
            kubernetes: Arc::new(kube::SimKube(self.clone())),
            etcd: Arc::new(etcd::SimEtcd(self.clone())),
        }
    }
}

fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::from_bytes(&Sha256::digest(bytes).into())
}

fn in_manifest_dir(path: &Path) -> bool {
    path.starts_with(MANIFEST_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::static_pods::{manifest, manifest_path, release_images};

    fn version(text: &str) -> Version {
        text.parse().expect("valid")
    }

    fn control_plane_machine(fault: Option<FaultKind>, log: &Arc<ControlPlaneLog>) -> Arc<Machine> {
        let plan = NodePlan { fault, step_latency_ms: 300, outage: None };
        let machine =
            Machine::new(Path::new("/usr/bin/kubelet"), &version("v1.30.2"), plan, Arc::default(), version("v1.30.3"))
                .in_fleet("cp-0", log.clone(), true, &version("v1.30.2"));
        Arc::new(machine)
    }

    async fn api_server_image(host: &Host) -> Option<String> {
        let observed =
            host.kubernetes.static_pod_container("kube-system", "kube-apiserver-cp-0", "kube-apiserver").await;
        observed.expect("answers").map(|container| container.image)
    }

    #[tokio::test]
    async fn a_renamed_manifest_runs_after_the_pickup_delay_and_the_fleet_sees_its_api_server() {
        let log = Arc::new(ControlPlaneLog::default());
        let machine = control_plane_machine(None, &log);
        let host = machine.host();
        assert_eq!(host.kubernetes.control_plane_version().await, Ok(Some(version("v1.30.2"))));
        assert_eq!(log.etcd_members(), (1, 1));
        let new = release_images(&version("v1.30.3"))[1].image.as_str().to_owned();
        let staged = Path::new("/etc/kubernetes/upkeep-staged/kube-apiserver.yaml");
        host.files
            .write(staged, manifest("kube-apiserver", &new, &["--v=2"]).as_bytes(), 0o600)
            .await
            .expect("written");
        let planned_before = machine.planned_delay_ms();
        host.files.rename(staged, &manifest_path("kube-apiserver")).await.expect("renamed");
        let pickup = machine.static_pods.as_ref().expect("a control-plane machine").pickup();
        assert_eq!(
            Duration::from_millis(machine.planned_delay_ms() - planned_before),
            pickup,
            "the node waits for the pickup, so it is planned latency"
        );
        let old = api_server_image(&host).await;
        assert_eq!(old.as_deref(), Some("registry.k8s.io/kube-apiserver:v1.30.2"), "not before the pickup delay");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while api_server_image(&host).await.as_deref() != Some(new.as_str()) {
            assert!(tokio::time::Instant::now() < deadline, "the kubelet never picked the manifest up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            host.health.version(static_pods::API_SERVER_VERSION, None, Duration::from_secs(1)).await,
            Ok(version("v1.30.3"))
        );
        assert_eq!(host.kubernetes.control_plane_version().await, Ok(Some(version("v1.30.3"))));
        assert_eq!(machine.manifest_writes(), [manifest_path("kube-apiserver")], "the staged copy lives outside");
    }

    #[tokio::test]
    async fn an_unpullable_image_fails_the_pull_and_etcd_answers_from_its_members() {
        let log = Arc::new(ControlPlaneLog::default());
        let machine = control_plane_machine(Some(FaultKind::ImageUnpullable), &log);
        let host = machine.host();
        let image = release_images(&version("v1.30.3"))[0].image.as_str().to_owned();
        assert!(host.images.pull(&[], &image, Duration::from_secs(1)).await.is_err());
        let health = host.etcd.health().await.expect("configured on a control-plane machine");
        assert!(health.healthy, "{health:?}");
        log.etcd_member("cp-1", false);
        log.etcd_member("cp-2", false);
        let health = host.etcd.health().await.expect("configured");
        assert!(!health.healthy, "one of three members is no quorum: {health:?}");
    }
}
