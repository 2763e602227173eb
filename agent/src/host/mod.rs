//! The host behind the agent, reached through small traits so the same server
//! and engine run over a real node or a simulated one.
//!
//! - [`VersionProbe`]: runs a component's version command.
//! - [`HostFactsSource`]: reads OS, kernel, CPUs, memory, disk, uptime and load.
//! - [`files::Files`]: stages artifacts, keeps backups, swaps binaries.
//! - [`services::ServiceManager`]: restarts a component's service.
//! - [`health::HealthProbe`]: checks a component's health and version URLs.
//! - [`images::ImagePuller`]: pulls a static pod's image through the container runtime.
//! - [`kubernetes::NodeAccess`]: cordon, uncordon and drain.
//! - [`etcd::EtcdAccess`]: etcd's snapshot and health, on a control-plane node.
//!
//! The real implementations live here; simulated ones live in the simulator.
//! [`Host`] bundles one of each.

pub mod command;
pub mod connection;
pub mod etcd;
pub mod etcd_snapshot;
pub mod facts;
pub mod fetch;
pub mod file_source;
pub mod files;
pub mod health;
pub mod images;
pub mod kube;
pub mod kubernetes;
pub mod services;
pub mod staging;
pub mod version_probe;

use std::path::PathBuf;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use upkeep_common::Version;
use upkeep_common::api::HostFacts;

use crate::config::ComponentConfig;

/// A boxed future, so the host traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a version command gave no version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The program could not be started.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The command ran past the timeout and was killed.
    #[error("version command did not finish within {0:?}")]
    Timeout(Duration),
    /// The command exited unsuccessfully.
    #[error("version command failed ({status}): {output}")]
    Failed {
        /// Its exit status.
        status: String,
        /// The start of what it printed.
        output: String,
    },
    /// The command succeeded but printed no version.
    #[error("version command printed no version: {output:?}")]
    NoVersion {
        /// The start of what it printed.
        output: String,
    },
}

/// Runs a component's version command.
pub trait VersionProbe: Send + Sync {
    /// The version the component reports, within `timeout`.
    fn probe<'a>(
        &'a self,
        component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, ProbeError>>;
}

/// Reads facts about the host.
pub trait HostFactsSource: Send + Sync {
    /// Current facts; may block briefly on `/proc` reads.
    fn facts(&self) -> HostFacts;
}

/// Why the real host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The artifact CA bundle is unusable.
    #[error(transparent)]
    Tls(#[from] upkeep_net::tls::TlsError),
    /// The Kubernetes credentials are unusable.
    #[error("Kubernetes access: {0}")]
    Kubernetes(#[from] kubernetes::KubeError),
}

/// Everything the agent reaches on its host.
#[derive(Clone)]
pub struct Host {
    /// Version commands.
    pub versions: Arc<dyn VersionProbe>,
    /// Host facts.
    pub facts: Arc<dyn HostFactsSource>,
    /// Files and artifacts.
    pub files: Arc<dyn files::Files>,
    /// Service restarts.
    pub services: Arc<dyn services::ServiceManager>,
    /// Health URLs.
    pub health: Arc<dyn health::HealthProbe>,
    /// Image pulls.
    pub images: Arc<dyn images::ImagePuller>,
    /// Kubernetes.
    pub kubernetes: Arc<dyn kubernetes::NodeAccess>,
    /// etcd.
    pub etcd: Arc<dyn etcd::EtcdAccess>,
}

impl Host {
    /// The real host described by `config`: commands, the filesystem, systemd,
    /// local health URLs, and the Kubernetes API and etcd when they are configured.
    pub async fn real(config: &crate::config::AgentConfig) -> Result<Host, HostError> {
        let disk_path = config
            .components
            .first()
            .and_then(|component| component.path.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/"));
        let reader = fetch::ArtifactReader::new(config.artifacts.ca_file.as_deref())?
            .with_file_roots(&config.artifacts.file_roots);
        let kubernetes: Arc<dyn kubernetes::NodeAccess> = match &config.kubernetes {
            None => Arc::new(kubernetes::NoKubernetes),
            Some(settings) => Arc::new(
                kube::KubeNodeAccess::connect(
                    settings.kubeconfig.as_deref(),
                    config.node_name.as_str(),
                    settings.request_timeout,
                )
                .await?,
            ),
        };
        let etcd: Arc<dyn etcd::EtcdAccess> = match &config.etcd {
            None => Arc::new(etcd::NoEtcd),
            Some(settings) => Arc::new(etcd::EtcdClient::new(settings.clone())),
        };
        Ok(Host {
            versions: Arc::new(version_probe::CommandVersionProbe),
            facts: Arc::new(facts::SystemFacts::new(disk_path)),
            files: Arc::new(files::RealFiles::new(reader)),
            services: Arc::new(services::RealServices),
            health: Arc::new(health::HttpHealthProbe),
            images: Arc::new(images::CommandPuller),
            kubernetes,
            etcd,
        })
    }
}
