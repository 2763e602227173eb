//! Background tasks that keep the node view fresh: version probes and, with
//! `[kubernetes]`, the Node's cordon and Ready condition, and host facts on
//! their intervals.

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;

use crate::app::App;
use crate::availability::NodeReading;
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

/// Reads the node's Node object (with `[kubernetes]`) and records what it says:
/// cordoned, and whether it is Ready.
pub async fn observe_node(host: &Host, node: &NodeView) {
    let reading = match host.kubernetes.observe().await {
        Ok(Some(observed)) => NodeReading::Read(observed),
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "the Node could not be read");
            NodeReading::Failed(error.to_string())
        }
    };
    node.record_node(reading, Utc::now());
}

/// Probes versions and reads the Node, both at once.
pub async fn refresh(config: &AgentConfig, host: &Host, node: &NodeView, metrics: &Metrics) {
    futures_util::future::join(probe_versions(config, host, node, metrics), observe_node(host, node)).await;
}

/// Refreshes versions and the Node every `probe.interval` (the first round runs at once).
pub async fn refresh_forever(app: Arc<App>) {
    let mut ticker = tokio::time::interval(app.config.probe.interval);
    loop {
        ticker.tick().await;
        app.refresh().await;
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
