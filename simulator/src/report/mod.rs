//! The run's report: a JSON document with the figures, the checks and the
//! timeline, (in [`html`]) one self-contained HTML page with a chart, and (in
//! [`summary`]) the lines printed on a terminal.

pub mod html;
pub mod summary;

use std::collections::BTreeMap;

use serde::Serialize;
use upkeep_coordinator::report::Counters;

use crate::checks::Violation;
pub use crate::checks::control_plane::ControlPlaneReport;

/// Per-node upgrade durations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (any order).
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Self { p50: at(0.50), p95: at(0.95), p99: at(0.99) }
    }
}

/// Errors grouped by step and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorGroup {
    /// The step that failed (`-` when none was named).
    pub step: String,
    /// The code.
    pub code: String,
    /// How many nodes.
    pub count: usize,
}

/// The bare-protocol calibration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Calibration {
    /// Seconds for one mTLS handshake and a few small requests per node, across the fleet.
    pub bare_protocol_s: f64,
    /// The rollout's wall time divided by it.
    pub overhead_ratio: f64,
}

/// The end-of-run checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecksReport {
    /// Whether every check held.
    pub passed: bool,
    /// What did not.
    pub violations: Vec<Violation>,
}

/// One point of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// Milliseconds since the rollout started.
    pub t_ms: u64,
    /// Nodes patched or skipped so far.
    pub patched: usize,
    /// Nodes being upgraded now.
    pub in_flight: usize,
    /// Nodes failed so far.
    pub failed: usize,
}

/// What the coordinator service did, when it drove the rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// Each workflow task's duration in ms (PreCheck, Snapshot, Upgrade, PostCheck).
    pub tasks_ms: BTreeMap<String, f64>,
    /// Times it was killed and opened again on its store.
    pub restarts: usize,
    /// Batches its store committed (one fsync each).
    pub store_commits: u64,
    /// Keys its store wrote.
    pub store_writes: u64,
    /// `GET /v1/clusters/{cluster}` asked every 100 ms during the update: its latency in ms.
    pub cluster_get_ms: Percentiles,
    /// How long after the service stamped an event the stream delivered it, in ms.
    pub event_lag_ms: Percentiles,
    /// From the kill to the first event of the service opened again, in ms.
    pub resumed_after_ms: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `cli` (the one-shot engine) or `service` (the coordinator service's API).
    pub driver: &'static str,
    /// The service's figures, when it drove the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceFigures>,
    /// The seed that reproduces the run.
    pub seed: u64,
    /// Nodes in the fleet.
    pub nodes: usize,
    /// The coordinator's counters.
    pub counters: Counters,
    /// The rollout's wall time in seconds.
    pub wall_s: f64,
    /// Nodes handled per second.
    pub nodes_per_s: f64,
    /// Per-node upgrade durations in milliseconds.
    pub duration_ms: Percentiles,
    /// The unavailability limit the checks hold the rollout to.
    pub max_unavailable: usize,
    /// The most nodes seen unavailable at once, sampled from the agents.
    pub peak_unavailable: usize,
    /// Errors by step and code.
    pub errors: Vec<ErrorGroup>,
    /// The process's peak resident memory.
    pub rss_peak_bytes: u64,
    /// Resident memory added per fake node when the fleet started.
    pub rss_per_node_bytes: u64,
    /// The bare-protocol calibration.
    pub calibration: Calibration,
    /// HTTP requests the agents answered during the rollout, per node (an
    /// agent restarted by a fault counts from its restart).
    pub requests_per_node: f64,
    /// CPU milliseconds the coordinator's own threads spent per node.
    pub coordinator_cpu_ms_per_node: f64,
    /// The fastest the rollout could have been (see [`crate::efficiency`]), in seconds.
    pub ideal_wall_s: f64,
    /// The ideal wall time over the measured one.
    pub efficiency: f64,
    /// Each fault-free node's measured duration over its planned step latencies.
    pub stretch: Percentiles,
    /// The end-of-run checks.
    pub checks: ChecksReport,
    /// The control plane's part: static pods upgraded and rolled back, the kubelet skew check.
    pub control_plane: ControlPlaneReport,
    /// Faults planned, by kind.
    pub faults: BTreeMap<String, usize>,
    /// Patched, in flight and failed over time.
    pub timeline: Vec<TimelinePoint>,
    /// Each node's outcome (`patched`, `skipped`, `pending`, or `error STEP CODE`).
    pub outcomes: BTreeMap<String, String>,
}

/// Resident memory now and at its peak, from `/proc/self/status`.
pub fn rss() -> (u64, u64) {
    memory_of("self")
}

/// Resident memory now and at its peak of process `pid` (a number, or
/// `self`), in bytes, from `/proc/PID/status`; zeros when it cannot be read.
pub fn memory_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99), (51.0, 95.0, 99.0));
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
    }

    #[test]
    fn reads_its_own_memory() {
        let (now, peak) = rss();
        assert!(now > 0 && peak >= now);
    }
}
