//! What every request handler and background task of one agent can reach: its
//! configuration, its view of the node, its host and its metrics.

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;

use crate::config::AgentConfig;
use crate::host::{HostFactsSource, VersionProbe};
use crate::node::NodeView;
use crate::server::metrics::Metrics;

/// One agent's shared state.
pub struct App {
    /// The validated configuration.
    pub config: AgentConfig,
    /// The node state served by `GET /v1/node`.
    pub node: NodeView,
    /// The metrics served by `GET /metrics`.
    pub metrics: Metrics,
    /// Runs version commands.
    pub version_probe: Arc<dyn VersionProbe>,
    /// Reads host facts.
    pub host_facts: Arc<dyn HostFactsSource>,
}

impl App {
    /// Builds the agent's state over the given host.
    pub fn new(
        config: AgentConfig,
        version_probe: Arc<dyn VersionProbe>,
        host_facts: Arc<dyn HostFactsSource>,
    ) -> Self {
        let node = NodeView::new(&config, host_facts.facts(), Utc::now());
        Self { config, node, metrics: Metrics::new(), version_probe, host_facts }
    }

    /// Runs every component's version command (concurrently) and records the results.
    pub async fn probe_versions(&self) {
        let timeout = self.config.probe.version_timeout;
        let probes = self.config.components.iter().map(|component| async move {
            (component.name.clone(), self.version_probe.probe(component, timeout).await)
        });
        let results = join_all(probes).await;
        let observed: Vec<(&str, String)> = results
            .iter()
            .filter_map(|(name, result)| result.as_ref().ok().map(|version| (name.as_str(), version.to_string())))
            .collect();
        self.metrics.set_component_versions(observed);
        self.node.record_probes(results, Utc::now());
    }
}
