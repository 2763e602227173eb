//! What every request handler and background task of one agent can reach: its
//! configuration, its view of the node, its host, its engine and its metrics.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Semaphore;

use crate::config::AgentConfig;
use crate::engine::{Engine, OpenError};
use crate::host::Host;
use crate::node::NodeView;
use crate::server::metrics::Metrics;
use crate::store::Store;

/// One agent's shared state.
pub struct App {
    /// The validated configuration.
    pub config: Arc<AgentConfig>,
    /// The node state served by `GET /v1/node`.
    pub node: Arc<NodeView>,
    /// The metrics served by `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// The host.
    pub host: Host,
    /// The upgrade engine.
    pub engine: Arc<Engine>,
    /// Permits for requests that wait for an operation to change.
    pub waiting: Semaphore,
    /// Held while an etcd snapshot is being taken: one at a time.
    pub etcd_snapshot: tokio::sync::Mutex<()>,
}

impl App {
    /// Builds the agent over `host`, loading saved state from `store`. Call
    /// [`App::start`] next to probe versions and resume interrupted operations.
    pub fn new(config: impl Into<Arc<AgentConfig>>, host: Host, store: Store) -> Result<Self, OpenError> {
        let config = config.into();
        let node = Arc::new(NodeView::new(&config, host.facts.facts(), Utc::now()));
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::open(Arc::clone(&config), host.clone(), store, node.clone(), metrics.clone())?;
        let waiting = Semaphore::new(crate::server::wait::MAX_WAITING);
        Ok(Self { config, node, metrics, host, engine, waiting, etcd_snapshot: tokio::sync::Mutex::new(()) })
    }

    /// Probes versions and reads the Node once, then resumes operations a stop interrupted.
    pub async fn start(&self) {
        self.refresh().await;
        crate::engine::recovery::resume_interrupted(&self.engine);
    }

    /// Runs every component's version command and reads the Node (with
    /// `[kubernetes]`), and records the results.
    pub async fn refresh(&self) {
        crate::refresh::refresh(&self.config, &self.host, &self.node, &self.metrics).await;
    }
}
