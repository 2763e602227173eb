//! Prometheus metrics of the agent, served by `GET /metrics` in the OpenMetrics
//! text format: requests by route and status, handshake failures by reason,
//! open connections, the observed version of each component as an info gauge,
//! operations by kind and outcome, step durations, durable writes of saved
//! state by record, and build info.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use upkeep_net::metrics::ServerMetrics;

use super::step_durations::StepDurations;

/// The content type of the metrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    component: String,
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    record: &'static str,
}

/// The agent's metrics. The registry that names and describes them is built
/// for each scrape, not kept: its descriptions would cost every agent memory
/// between scrapes that come a minute apart.
pub struct Metrics {
    /// Requests, failed handshakes and open connections.
    pub server: ServerMetrics,
    component_versions: Family<VersionLabels, Gauge>,
    waiting_requests: Gauge,
    operations: Family<OperationLabels, Counter>,
    step_durations: StepDurations,
    state_writes: Family<WriteLabels, Counter>,
}

impl Metrics {
    /// The agent's metrics, none observed yet.
    pub fn new() -> Self {
        Self {
            server: ServerMetrics::default(),
            component_versions: Family::default(),
            waiting_requests: Gauge::default(),
            operations: Family::default(),
            step_durations: StepDurations::default(),
            state_writes: Family::default(),
        }
    }

    /// A registry of every metric under the `upkeep_agent` prefix.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("upkeep_agent");
        registry.register("operations", "Operations that ended, by kind and outcome", self.operations.clone());
        // A collector: the registry writes it after every registered metric, whatever the order here.
        registry.register_collector(Box::new(self.step_durations.clone()));
        registry.register(
            "state_writes",
            "Saved-state records written (each an fsync and a rename on disk), by record: operation, node, token",
            self.state_writes.clone(),
        );
        self.server.register(&mut registry);
        registry.register(
            "component_version",
            "Observed version of each managed component (1 for the current version)",
            self.component_versions.clone(),
        );
        registry.register(
            "waiting_requests",
            "Requests holding their answer until an operation moves on (long polls)",
            self.waiting_requests.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        registry
    }

    /// Publishes the observed versions, replacing the previous ones.
    pub fn set_component_versions<'a>(&self, versions: impl IntoIterator<Item = (&'a str, String)>) {
        self.component_versions.clear();
        for (component, version) in versions {
            self.component_versions.get_or_create(&VersionLabels { component: component.to_owned(), version }).set(1);
        }
    }

    /// Tracks a request starting (`+1`) or ending (`-1`) a wait for an operation.
    pub fn add_waiting_requests(&self, delta: i64) {
        self.waiting_requests.inc_by(delta);
    }

    /// Counts an operation that ended.
    pub fn record_operation(
        &self,
        kind: upkeep_common::api::OperationKind,
        outcome: upkeep_common::api::OperationPhase,
    ) {
        let labels = OperationLabels { kind: format!("{kind:?}").to_lowercase(), outcome: format!("{outcome:?}") };
        self.operations.get_or_create(&labels).inc();
    }

    /// Counts one saved-state record written: `record` is operation, node or token.
    pub fn record_state_write(&self, record: &'static str) {
        self.state_writes.get_or_create(&WriteLabels { record }).inc();
    }

    /// Records how long a step took.
    pub fn observe_step(&self, step: upkeep_common::api::StepName, seconds: f64) {
        self.step_durations.observe(step, seconds);
    }

    /// The metrics page.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry()).is_err() {
            text.clear();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists_every_family() {
        let metrics = Metrics::new();
        metrics.server.record_request("/v1/node", 200);
        metrics.server.record_request("/v1/node", 200);
        metrics.server.record_handshake_failure("unknown_issuer");
        metrics.set_component_versions([("kubelet", "v1.30.2".to_owned())]);
        metrics.set_component_versions([("kubelet", "v1.31.0".to_owned())]);
        let page = metrics.encode();
        assert!(page.contains("upkeep_agent_http_requests_total{route=\"/v1/node\",status=\"200\"} 2"), "{page}");
        assert!(page.contains("upkeep_agent_tls_handshake_failures_total{reason=\"unknown_issuer\"} 1"), "{page}");
        assert!(page.contains("upkeep_agent_component_version{component=\"kubelet\",version=\"v1.31.0\"} 1"), "{page}");
        assert!(!page.contains("v1.30.2"), "old versions are dropped: {page}");
        assert!(page.contains("upkeep_agent_build_info{version="), "{page}");
        assert!(page.ends_with("# EOF\n"));
    }
}
