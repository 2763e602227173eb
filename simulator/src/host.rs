//! The simulated host behind a fake node: its files, service manager, version
//! probe, health check and Kubernetes access live in memory, with the node's
//! planned fault and step latency. Everything above it (server, authorization,
//! engine, store format) is the real agent.
//!
//! The simulated Node behaves as a real one does for the agent: its cordon
//! records the operation that set it, and a kubelet restart makes it report the
//! installed kubelet's version with a fresh Ready heartbeat.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use upkeep_agent::config::ComponentConfig;
use upkeep_agent::host::etcd::NoEtcd;
use upkeep_agent::host::files::{FileError, Files, Staged};
use upkeep_agent::host::health::HealthProbe;
use upkeep_agent::host::images::ImagePuller;
use upkeep_agent::host::kubernetes::{
    ContainerObservation, CordonOutcome, DrainOutcome, DrainSettings, KubeError, NodeAccess, NodeObservation,
    ReadyCondition,
};
use upkeep_agent::host::services::{RestartError, RestartOutcome, ServiceManager};
use upkeep_agent::host::staging::DirEntry;
use upkeep_agent::host::{BoxFuture, Host, HostFactsSource, ProbeError, VersionProbe};
use upkeep_common::Version;
use upkeep_common::api::{HostFacts, LoadAverage};
use upkeep_common::ids::{OperationId, Sha256 as Sha256Digest};

use crate::availability::Unavailability;
use crate::faults::{FaultKind, NodePlan};

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

/// One simulated machine: its disk, service and Kubernetes Node.
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
            crashed: Notify::new(),
        }
    }

    /// The same machine, reporting every cordon and uncordon of its Node to
    /// `unavailability` as node `index`.
    pub fn reporting_to(self, unavailability: Arc<Unavailability>, index: usize) -> Self {
        Self { unavailability: Some((unavailability, index)), ..self }
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
        node.kubelet_version = version;
        node.heartbeat = Utc::now();
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
    /// the steps that ran.
    pub fn planned_delay_ms(&self) -> u64 {
        self.delayed_ms.load(Ordering::Relaxed)
    }

    fn runs_new_binary(&self) -> bool {
        self.installed() == binary_for(&self.target)
    }

    /// The host made of this machine's parts.
    pub fn host(self: &Arc<Self>) -> Host {
        Host {
            versions: Arc::new(SimVersions(self.clone())),
            facts: Arc::new(SimFacts),
            files: Arc::new(SimFiles(self.clone())),
            services: Arc::new(SimServices(self.clone())),
            health: Arc::new(SimHealth(self.clone())),
            images: Arc::new(SimImages),
            kubernetes: Arc::new(SimKube { machine: self.clone(), control_plane: self.target.clone() }),
            etcd: Arc::new(NoEtcd),
        }
    }
}

fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::from_bytes(&Sha256::digest(bytes).into())
}

fn missing(path: &Path) -> FileError {
    FileError::Io { path: path.display().to_string(), reason: "no such file".to_owned() }
}

/// The machine's disk.
struct SimFiles(Arc<Machine>);

impl Files for SimFiles {
    fn free_bytes<'a>(&'a self, _dir: &'a Path) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async { Some(100 * 1024 * 1024 * 1024) })
    }

    fn stage<'a>(
        &'a self,
        source: &'a str,
        destination: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Staged, FileError>> {
        Box::pin(async move {
            self.0.step_delay().await;
            let Some(mut bytes) = self.0.artifacts.get(source).cloned() else {
                return Err(FileError::Fetch { source_url: source.to_owned(), reason: "not found".to_owned() });
            };
            if self.0.fault() == Some(FaultKind::CorruptArtifact)
                && let Some(last) = bytes.last_mut()
            {
                *last ^= 0xff;
            }
            if bytes.len() as u64 > max_bytes {
                return Err(FileError::TooLarge { limit: max_bytes });
            }
            let staged = Staged { sha256: digest(&bytes), size: bytes.len() as u64 };
            self.0.files().insert(destination.to_path_buf(), bytes);
            Ok(staged)
        })
    }

    fn digest<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Option<Sha256Digest>, FileError>> {
        Box::pin(async move { Ok(self.0.files().get(path).map(|bytes| digest(bytes))) })
    }

    fn backup<'a>(&'a self, binary: &'a Path, backup: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            {
                let mut files = self.0.files();
                if !files.contains_key(backup) {
                    let bytes = files.get(binary).cloned().ok_or_else(|| missing(binary))?;
                    files.insert(backup.to_path_buf(), bytes);
                }
            }
            if self.0.crash_armed.swap(false, Ordering::Relaxed) {
                // The agent dies here: it never gets past this point, and the
                // fleet stops its engine and starts a new one on the same disk.
                self.0.crashed.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let mut files = self.0.files();
            let bytes = files.remove(from).ok_or_else(|| missing(from))?;
            if to == self.0.binary {
                self.0.swaps.fetch_add(1, Ordering::Relaxed);
            }
            files.insert(to.to_path_buf(), bytes);
            Ok(())
        })
    }

    fn restore<'a>(&'a self, backup: &'a Path, binary: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let mut files = self.0.files();
            let bytes = files.get(backup).cloned().ok_or_else(|| missing(backup))?;
            files.insert(binary.to_path_buf(), bytes);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            self.0.files().remove(path);
            Ok(())
        })
    }

    fn read<'a>(&'a self, path: &'a Path, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FileError>> {
        Box::pin(async move {
            let bytes = self.0.files().get(path).cloned().ok_or_else(|| missing(path))?;
            if bytes.len() as u64 > max_bytes { Err(FileError::TooLarge { limit: max_bytes }) } else { Ok(bytes) }
        })
    }

    fn write<'a>(&'a self, path: &'a Path, bytes: &'a [u8], _mode: u32) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            self.0.files().insert(path.to_path_buf(), bytes.to_vec());
            Ok(())
        })
    }

    fn list<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Vec<DirEntry>> {
        Box::pin(async move {
            let files = self.0.files();
            files
                .keys()
                .filter(|path| path.parent() == Some(dir))
                .map(|path| DirEntry { path: path.clone(), modified: None })
                .collect()
        })
    }

    fn reachable<'a>(&'a self, source: &'a str, _within: Duration) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            match self.0.artifacts.contains_key(source) {
                true => Ok(()),
                false => Err(FileError::Fetch { source_url: source.to_owned(), reason: "not found".to_owned() }),
            }
        })
    }

    fn exists<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.0.files().contains_key(path) || self.0.artifacts.contains_key(&format!("file://{}", path.display()))
        })
    }
}

/// `kubelet --version`: reads the installed binary.
struct SimVersions(Arc<Machine>);

impl VersionProbe for SimVersions {
    fn probe<'a>(
        &'a self,
        _component: &'a ComponentConfig,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, ProbeError>> {
        Box::pin(async move {
            let text = String::from_utf8_lossy(&self.0.installed()).into_owned();
            Version::find_in_text(&text).ok_or(ProbeError::NoVersion { output: text })
        })
    }
}

/// The service manager.
struct SimServices(Arc<Machine>);

impl ServiceManager for SimServices {
    fn restart<'a>(
        &'a self,
        _component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<RestartOutcome, RestartError>> {
        Box::pin(async move {
            self.0.step_delay().await;
            if self.0.hang_armed.swap(false, Ordering::Relaxed) {
                tokio::time::sleep(timeout).await;
                return Err(RestartError::Timeout(timeout));
            }
            self.0.restarts.fetch_add(1, Ordering::Relaxed);
            self.0.kubelet_started();
            Ok(RestartOutcome::Restarted)
        })
    }
}

/// The component's health: a service that will not start fails on the new binary.
struct SimHealth(Arc<Machine>);

impl HealthProbe for SimHealth {
    fn check<'a>(
        &'a self,
        _url: &'a str,
        _ca: Option<&'a Path>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.0.fault() == Some(FaultKind::ServiceWontStart) && self.0.runs_new_binary() {
                Err("kubelet.service failed to start".to_owned())
            } else {
                Ok(())
            }
        })
    }

    fn version<'a>(
        &'a self,
        url: &'a str,
        _ca: Option<&'a Path>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, String>> {
        Box::pin(async move { Err(format!("{url}: a simulated host serves no version URL")) })
    }
}

/// Image pulls: a simulated node has every image at hand.
struct SimImages;

impl ImagePuller for SimImages {
    fn pull<'a>(
        &'a self,
        _command: &'a [String],
        _image: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Static host facts.
struct SimFacts;

impl HostFactsSource for SimFacts {
    fn facts(&self) -> HostFacts {
        HostFacts {
            arch: "amd64".to_owned(),
            os: "simulated".to_owned(),
            kernel: "simulated".to_owned(),
            cpus: 4,
            memory_total_bytes: 16 << 30,
            memory_available_bytes: 12 << 30,
            disk_path: "/usr/bin".to_owned(),
            disk_free_bytes: Some(100 << 30),
            uptime_seconds: 86_400,
            load: LoadAverage { one: 0.1, five: 0.1, fifteen: 0.1 },
        }
    }
}

/// The node's Kubernetes API: cordon state and a drain that disruption budgets may block.
struct SimKube {
    machine: Arc<Machine>,
    control_plane: Version,
}

impl NodeAccess for SimKube {
    fn configured(&self) -> bool {
        true
    }

    fn observe(&self) -> BoxFuture<'_, Result<Option<NodeObservation>, KubeError>> {
        Box::pin(async move {
            let node = self.machine.node().clone();
            Ok(Some(NodeObservation {
                unschedulable: node.unschedulable,
                cordoned_by: node.cordoned_by,
                ready: Some(ReadyCondition {
                    status: "True".to_owned(),
                    last_heartbeat: Some(node.heartbeat),
                    reason: "KubeletReady".to_owned(),
                }),
                kubelet_version: node.kubelet_version.map(|v| v.to_string()),
            }))
        })
    }

    fn cordon<'a>(&'a self, operation: &'a OperationId) -> BoxFuture<'a, Result<CordonOutcome, KubeError>> {
        Box::pin(async move {
            let mut node = self.machine.node();
            if node.unschedulable && node.cordoned_by.as_deref() != Some(operation.as_str()) {
                return Ok(CordonOutcome::AlreadyCordoned);
            }
            node.unschedulable = true;
            node.cordoned_by = Some(operation.to_string());
            drop(node);
            self.machine.report_cordoned(true);
            Ok(CordonOutcome::Cordoned)
        })
    }

    fn uncordon<'a>(&'a self, operation: &'a OperationId, only_if_ours: bool) -> BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async move {
            let mut node = self.machine.node();
            if only_if_ours && node.cordoned_by.as_deref() != Some(operation.as_str()) {
                return Ok(());
            }
            node.unschedulable = false;
            node.cordoned_by = None;
            drop(node);
            self.machine.report_cordoned(false);
            Ok(())
        })
    }

    fn drain<'a>(&'a self, settings: &'a DrainSettings) -> BoxFuture<'a, Result<DrainOutcome, KubeError>> {
        Box::pin(async move {
            self.machine.step_delay().await;
            match self.machine.fault() {
                Some(FaultKind::DrainBlockedForGood) => {
                    tokio::time::sleep(settings.timeout).await;
                    Err(KubeError::DrainBlocked(format!(
                        "pods did not leave within {:?}: default/app (blocked by a disruption budget until the timeout)",
                        settings.timeout
                    )))
                }
                Some(FaultKind::DrainBlockedForAWhile) => {
                    let wait = (settings.timeout / 4).min(Duration::from_millis(500));
                    tokio::time::sleep(wait).await;
                    Ok(DrainOutcome::Drained { evicted: 3, retries: 3, forced: Vec::new() })
                }
                _ => Ok(DrainOutcome::Drained { evicted: 3, retries: 0, forced: Vec::new() }),
            }
        })
    }

    fn control_plane_version(&self) -> BoxFuture<'_, Result<Option<Version>, KubeError>> {
        Box::pin(async move { Ok(Some(self.control_plane.clone())) })
    }

    fn static_pod_container<'a>(
        &'a self,
        _namespace: &'a str,
        _pod: &'a str,
        _container: &'a str,
    ) -> BoxFuture<'a, Result<Option<ContainerObservation>, KubeError>> {
        // A simulated node runs no static pods: its config names none.
        Box::pin(async { Ok(None) })
    }
}
