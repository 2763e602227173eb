//! Prometheus metrics of the service, served by `GET /metrics` in the
//! OpenMetrics text format: requests by route and status, handshake failures,
//! open connections, updates started and running, and the store's commits.

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use upkeep_net::metrics::ServerMetrics;

use crate::store::StoreStats;

/// The content type of the metrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The service's metrics and their registry.
pub struct ServiceMetrics {
    registry: Registry,
    /// Requests, failed handshakes and open connections.
    pub server: ServerMetrics,
    updates_started: Counter,
    updates_running: Gauge,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    /// Empty metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("upkeep_coordinator");
        let server = ServerMetrics::default();
        let updates_started = Counter::default();
        let updates_running = Gauge::default();
        server.register(&mut registry);
        registry.register("updates_started", "Updates accepted", updates_started.clone());
        registry.register("updates_running", "Updates running now", updates_running.clone());
        Self { registry, server, updates_started, updates_running }
    }

    /// Counts an accepted update.
    pub fn update_started(&self) {
        self.updates_started.inc();
    }

    /// Sets how many updates run now.
    pub fn set_updates_running(&self, running: i64) {
        self.updates_running.set(running);
    }

    /// The page, with the store's figures as of now.
    pub fn encode(&self, store: StoreStats) -> String {
        let mut registry = Registry::with_prefix("upkeep_coordinator_store");
        registry.register("commits", "Batches written to the store (one fsync each)", ConstCounter::new(store.commits));
        registry.register("writes", "Keys written to the store", ConstCounter::new(store.writes));
        let mut text = String::new();
        let encoded = text::encode_registry(&mut text, &self.registry)
            .and_then(|()| text::encode_registry(&mut text, &registry))
            .and_then(|()| text::encode_eof(&mut text));
        if encoded.is_err() {
            text.clear();
        }
        text
    }
}
