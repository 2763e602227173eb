//! The service as a whole: its store, its clusters and its metrics. Opening it
//! loads every cluster's inventory, catalog and stored state, and picks up
//! the updates that were running when it last stopped; [`ServiceApp::launch`]
//! starts an update's workflow.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::catalog::{CatalogError, CatalogFile};
use crate::client::{AgentClient, ClientError};
use crate::control::Control;
use crate::inventory::{Inventory, InventoryError};
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};

use super::cluster::{ClusterParts, ClusterRuntime, ClusterState, RunningUpdate, ServiceSettings};
use super::config::ServiceConfig;
use super::log::UpdateLog;
use super::metrics::ServiceMetrics;
use super::model::{ClusterSpec, Update, UpdateStatus};
use super::records::Records;
use super::workflow::Workflow;

/// The file of the embedded store under the state directory.
pub const STORE_FILE: &str = "coordinator.redb";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The state directory could not be made.
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cluster's inventory is unreadable.
    #[error("cluster {cluster}: {source}")]
    Inventory {
        /// The cluster.
        cluster: String,
        /// Why.
        source: InventoryError,
    },
    /// A cluster's catalog is unreadable.
    #[error("cluster {cluster}: {source}")]
    Catalog {
        /// The cluster.
        cluster: String,
        /// Why.
        source: CatalogError,
    },
    /// A cluster's agent client could not be built.
    #[error("cluster {cluster}: {source}")]
    Client {
        /// The cluster.
        cluster: String,
        /// Why.
        source: ClientError,
    },
}

/// The running service.
pub struct ServiceApp {
    /// The clusters by name.
    pub clusters: BTreeMap<String, Arc<ClusterRuntime>>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The metrics.
    pub metrics: ServiceMetrics,
    /// This replica's name.
    pub replica: String,
    shutdown: watch::Sender<bool>,
}

impl ServiceApp {
    /// Opens the store and every cluster, and starts the updates that were running.
    pub async fn open(config: &ServiceConfig, settings: ServiceSettings) -> Result<Arc<ServiceApp>, ServiceError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|source| ServiceError::StateDir { path: config.state_dir.clone(), source })?;
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.state_dir.join(STORE_FILE))?);
        Self::open_on(config, settings, store).await
    }

    /// Like [`ServiceApp::open`], on a given store.
    pub async fn open_on(
        config: &ServiceConfig,
        settings: ServiceSettings,
        store: Arc<dyn Store>,
    ) -> Result<Arc<ServiceApp>, ServiceError> {
        let records = Records::new(store.clone());
        let (shutdown, stopping) = watch::channel(false);
        let mut clusters = BTreeMap::new();
        let mut resumed = Vec::new();
        for cluster in &config.clusters {
            let name = cluster.name.as_str().to_owned();
            let inventory = Inventory::load_all(&cluster.inventory)
                .map_err(|source| ServiceError::Inventory { cluster: name.clone(), source })?;
            let catalog = CatalogFile::open(cluster.catalog.clone())
                .map_err(|source| ServiceError::Catalog { cluster: name.clone(), source })?;
            let client = AgentClient::for_inventory(&inventory, settings.call_timeout)
                .map_err(|source| ServiceError::Client { cluster: name.clone(), source })?;
            let spec = match records.spec(&name).await? {
                Some(spec) => spec,
                None => ClusterSpec { version: None, channel: catalog.current().channel.clone(), generation: 1 },
            };
            let current = match records.current(&name).await? {
                Some(id) => records.update(&name, &id).await?,
                None => None,
            };
            let last = match &current {
                Some(_) => None,
                None => records.updates(&name).await?.pop(),
            };
            let state = ClusterState {
                observed_generation: spec.generation,
                spec,
                conditions: Vec::new(),
                running: None,
                last,
            };
            let runtime = Arc::new(ClusterRuntime::new(ClusterParts {
                config: cluster.clone(),
                inventory,
                client,
                catalog,
                records: records.clone(),
                settings: settings.clone(),
                state,
                shutdown: stopping.clone(),
            }));
            if let Some(update) = current {
                resumed.push((runtime.clone(), update));
            }
            clusters.insert(name, runtime);
        }
        let app = Arc::new(ServiceApp {
            clusters,
            store,
            metrics: ServiceMetrics::new(),
            replica: settings.replica.clone(),
            shutdown,
        });
        for (cluster, update) in resumed {
            let last_seq = records.last_event(cluster.name(), &update.id).await?;
            let control = if update.status == UpdateStatus::Paused { Control::Pause } else { Control::Run };
            let mut state = cluster.state.lock().await;
            app.launch(&cluster, &mut state, update, last_seq, control);
        }
        for cluster in app.clusters.values() {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                cluster.read_nodes().await;
            });
        }
        Ok(app)
    }

    /// Starts `update`'s workflow on `cluster` (whose state the caller holds locked).
    pub fn launch(
        &self,
        cluster: &Arc<ClusterRuntime>,
        state: &mut ClusterState,
        update: Update,
        last_seq: u64,
        control: Control,
    ) {
        let log = Arc::new(UpdateLog::new(cluster.records.clone(), update, last_seq));
        let (control_sender, control_receiver) = watch::channel(control);
        let workflow = Workflow { cluster: cluster.clone(), log: log.clone(), control: control_receiver };
        let task = tokio::spawn(workflow.run());
        state.running = Some(RunningUpdate { log, control: control_sender, task: Some(task) });
    }

    /// Stops every workflow at once, as a crash would: nothing reaches a safe
    /// point, and whatever was not yet stored is lost. A service opened again
    /// on the same store picks the updates up.
    pub async fn abort(&self) {
        for cluster in self.clusters.values() {
            if let Some(task) = cluster.state.lock().await.running.as_mut().and_then(|running| running.task.take()) {
                task.abort();
                let _ = task.await;
            }
        }
        self.shutdown.send_replace(true);
    }

    /// Asks every workflow to stop at its next safe point (their updates stay
    /// InProgress for the next start) and waits for them.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        for cluster in self.clusters.values() {
            let task = cluster.state.lock().await.running.as_mut().and_then(|running| running.task.take());
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }
}
