//! Prometheus metrics of the service, served by `GET /metrics` in the
//! OpenMetrics text format: requests by route and status, handshake failures,
//! open connections, updates started and running, and the store's commits.

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::StoreStats;

/// The content type of the metrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The service's metrics and their registry.
pub struct ServiceMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
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
        let requests = Family::<RequestLabels, Counter>::default();
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        let open_connections = Gauge::default();
        let updates_started = Counter::default();
        let updates_running = Gauge::default();
        registry.register("http_requests", "HTTP requests served, by route template and status", requests.clone());
        registry.register("tls_handshake_failures", "Failed TLS handshakes, by reason", handshake_failures.clone());
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        registry.register("updates_started", "Updates accepted", updates_started.clone());
        registry.register("updates_running", "Updates running now", updates_running.clone());
        Self { registry, requests, handshake_failures, open_connections, updates_started, updates_running }
    }

    /// Counts a request.
    pub fn record_request(&self, route: &str, status: u16) {
        let labels = RequestLabels { route: route.to_owned(), status: status.to_string() };
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a failed handshake.
    pub fn record_handshake_failure(&self, reason: &str) {
        self.handshake_failures.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Counts connections opening (+1) and closing (-1).
    pub fn add_open_connections(&self, delta: i64) {
        self.open_connections.inc_by(delta);
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
