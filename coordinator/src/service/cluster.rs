//! One managed cluster at run time: its config, inventory, agents' client,
//! catalog and records, the nodes as last read, and its state (spec,
//! conditions, the running update). Writes to a cluster are serialized by its
//! state's lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use upkeep_common::api::{Condition, NodeRole};

use crate::catalog::{Catalog, CatalogFile};
use crate::client::AgentClient;
use crate::control::Control;
use crate::inventory::Inventory;
use crate::status::{NodeStatusRow, fleet_status};

use super::config::ClusterConfig;
use super::log::UpdateLog;
use super::model::{ClusterSpec, Update};
use super::nodes::NodeView;
use super::records::Records;

/// How the service talks to nodes.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Nodes asked at once when reading or checking.
    pub concurrency: usize,
    /// Time allowed for one call to an agent.
    pub call_timeout: Duration,
    /// How often a running operation is polled when its agent does not hold answers.
    pub poll_interval: Duration,
    /// How long running nodes may finish when the service stops.
    pub stop_timeout: Duration,
    /// This replica's name.
    pub replica: String,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            call_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            stop_timeout: Duration::from_secs(10),
            replica: "upkeep-0".to_owned(),
        }
    }
}

/// The running update of a cluster.
pub struct RunningUpdate {
    /// Its record and events.
    pub log: Arc<UpdateLog>,
    /// Pause, resume and cancel.
    pub control: watch::Sender<Control>,
    /// The workflow's task.
    pub task: Option<JoinHandle<()>>,
}

/// What changes when the cluster is written to.
pub struct ClusterState {
    /// What was asked.
    pub spec: ClusterSpec,
    /// The spec generation the service acted on.
    pub observed_generation: u64,
    /// The conditions as last shown.
    pub conditions: Vec<Condition>,
    /// The running update.
    pub running: Option<RunningUpdate>,
    /// The last update that ended.
    pub last: Option<Update>,
}

/// What a cluster is made of when the service opens it.
pub struct ClusterParts {
    /// Its config.
    pub config: ClusterConfig,
    /// Its nodes.
    pub inventory: Inventory,
    /// The client for its agents.
    pub client: AgentClient,
    /// Its catalog file.
    pub catalog: CatalogFile,
    /// Its records.
    pub records: Records,
    /// How nodes are talked to.
    pub settings: ServiceSettings,
    /// Its state as stored.
    pub state: ClusterState,
    /// Set when the service stops.
    pub shutdown: watch::Receiver<bool>,
}

/// One managed cluster.
pub struct ClusterRuntime {
    /// Its config.
    pub config: ClusterConfig,
    /// Its nodes.
    pub inventory: Inventory,
    /// The client for its agents.
    pub client: AgentClient,
    /// Its records in the store.
    pub records: Records,
    /// How nodes are talked to.
    pub settings: ServiceSettings,
    /// Each node's role, by name.
    pub roles: Arc<HashMap<String, NodeRole>>,
    catalog: Mutex<CatalogFile>,
    nodes: RwLock<Vec<NodeView>>,
    /// Its state.
    pub state: tokio::sync::Mutex<ClusterState>,
    /// Stops the workflows when the service stops.
    pub shutdown: watch::Receiver<bool>,
}

impl ClusterRuntime {
    /// A cluster from its parts.
    pub fn new(parts: ClusterParts) -> Self {
        let ClusterParts { config, inventory, client, catalog, records, settings, state, shutdown } = parts;
        let roles = inventory.nodes.iter().map(|n| (n.name.to_string(), n.role)).collect();
        let nodes = NodeView::unread(&inventory);
        Self {
            config,
            inventory,
            client,
            records,
            settings,
            roles: Arc::new(roles),
            catalog: Mutex::new(catalog),
            nodes: RwLock::new(nodes),
            state: tokio::sync::Mutex::new(state),
            shutdown,
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        self.config.name.as_str()
    }

    /// The catalog, reloaded first when its file changed (a broken file keeps the old one).
    pub fn catalog(&self) -> Arc<Catalog> {
        let mut file = self.catalog.lock().unwrap_or_else(PoisonError::into_inner);
        file.refresh();
        file.current()
    }

    /// Why the catalog file was last refused, if it was.
    pub fn catalog_problem(&self) -> Option<String> {
        let file = self.catalog.lock().unwrap_or_else(PoisonError::into_inner);
        file.last_error().map(ToString::to_string)
    }

    /// Computes something from the nodes as last read, without copying them.
    pub fn with_nodes<T>(&self, compute: impl FnOnce(&[NodeView]) -> T) -> T {
        compute(&self.nodes.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The nodes as last read.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes in fresh reads of the nodes (in inventory order).
    pub fn absorb<'a>(&self, rows: impl IntoIterator<Item = &'a NodeStatusRow>) {
        let now = Utc::now();
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        for (view, row) in nodes.iter_mut().zip(rows) {
            view.absorb(row, now);
        }
    }

    /// Reads every node and keeps what it saw.
    pub async fn read_nodes(&self) -> Vec<NodeStatusRow> {
        let rows = fleet_status(&self.client, &self.inventory, self.settings.concurrency).await;
        self.absorb(&rows);
        rows
    }
}
