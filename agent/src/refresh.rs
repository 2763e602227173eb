//! Background tasks that keep the node view fresh: version probes and host facts
//! on their intervals.

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;

use crate::app::App;
use crate::config::AgentConfig;
use crate::host::Host;
use crate::node::NodeView;
use crate::server::metrics::Metrics;

/// Runs every component's version command (concurrently) and records the results
/// in the node view and the metrics.
pub async fn probe_versions(config: &AgentConfig, host: &Host, node: &NodeView, metrics: &Metrics) {
    let timeout = config.probe.version_timeout;
    let probes = config
        .components
        .iter()
        .map(|component| async move { (component.name.clone(), host.versions.probe(component, timeout).await) });
    let results = join_all(probes).await;
    let observed: Vec<(&str, String)> = results
        .iter()
        .filter_map(|(name, result)| result.as_ref().ok().map(|version| (name.as_str(), version.to_string())))
        .collect();
    metrics.set_component_versions(observed);
    node.record_probes(results, Utc::now());
}

/// Probes versions every `probe.interval` (the first round runs at once).
pub async fn probe_versions_forever(app: Arc<App>) {
    let mut ticker = tokio::time::interval(app.config.probe.interval);
    loop {
        ticker.tick().await;
        app.probe_versions().await;
    }
}

/// Refreshes host facts every `probe.host_facts_interval`.
pub async fn refresh_host_facts_forever(app: Arc<App>) {
    let mut ticker = tokio::time::interval(app.config.probe.host_facts_interval);
    loop {
        ticker.tick().await;
        let source = app.host.facts.clone();
        match tokio::task::spawn_blocking(move || source.facts()).await {
            Ok(facts) => app.node.set_host_facts(facts),
            Err(error) => tracing::warn!(%error, "reading host facts failed"),
        }
    }
}
