//! The metrics every upkeep server keeps of its HTTP side: requests by route
//! template and status, TLS handshakes (full or resumed, and failed ones by
//! reason), and open connections. A server registers them beside its own.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    kind: &'static str,
}

/// A server's request, handshake and connection metrics.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    requests: Family<RequestLabels, Counter>,
    requests_served: AtomicU64,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    open_connections: Gauge,
}

impl ServerMetrics {
    /// Registers the metrics in `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry) {
        let requests = self.requests.clone();
        registry.register("http_requests", "HTTP requests served, by route template and status", requests);
        let handshakes = self.handshakes.clone();
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed: full, or resumed from a session ticket",
            handshakes,
        );
        let failures = self.handshake_failures.clone();
        registry.register("tls_handshake_failures", "TLS handshakes that failed, by reason", failures);
        registry.register("open_connections", "Client connections open now", self.open_connections.clone());
    }

    /// Counts one served request.
    pub fn record_request(&self, route: &str, status: u16) {
        self.requests.get_or_create(&RequestLabels { route: route.to_owned(), status: status.to_string() }).inc();
        self.requests_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered since the server started, every route and status together.
    pub fn requests_served(&self) -> u64 {
        self.requests_served.load(Ordering::Relaxed)
    }

    /// Counts one completed handshake, `resumed` from a session ticket or full.
    pub fn record_handshake(&self, resumed: bool) {
        let kind = if resumed { "resumed" } else { "full" };
        self.handshakes.get_or_create(&HandshakeLabels { kind }).inc();
    }

    /// Counts one failed handshake.
    pub fn record_handshake_failure(&self, reason: &str) {
        self.handshake_failures.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Counts connections opening (+1) and closing (-1).
    pub fn add_open_connections(&self, delta: i64) {
        self.open_connections.inc_by(delta);
    }
}
