//! What a simulated run is: the fleet, the fault plan's inputs, the
//! rollout's limits and what drives it, with the demo's run as the base that
//! other runs change.

use std::time::Duration;

use upkeep_common::Version;
use upkeep_coordinator::plan::Limit;

use crate::faults::{FaultKind, LatencyRange};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Control-plane nodes among them.
    pub control_planes: usize,
    /// Zones the nodes are spread over.
    pub zones: usize,
    /// The seed of the fault plan and latencies.
    pub seed: u64,
    /// The version the fleet starts at.
    pub from: Version,
    /// The rollout's target.
    pub to: Version,
    /// The rollout's unavailability limit.
    pub max_unavailable: Limit,
    /// The rollout's failure budget.
    pub max_failures: Limit,
    /// The rollout's per-zone limit.
    pub per_zone: Option<usize>,
    /// Whether the rollout prestages.
    pub prestage: bool,
    /// Each node's step latency range.
    pub latency: LatencyRange,
    /// The probability that a node has a fault.
    pub fault_rate: f64,
    /// The kinds faults are drawn from.
    pub fault_kinds: Vec<FaultKind>,
    /// Nodes the coordinator asks at once when reading or prestaging.
    pub concurrency: usize,
    /// How often the coordinator polls a running operation.
    pub poll_interval: Duration,
    /// A test double: the coordinator is given a limit this much above the one
    /// the checks hold it to, so the checks must catch it.
    pub limit_overshoot: usize,
    /// A test double: the coordinator is not given the release's static-pod
    /// images, so the kubelets outrun the API servers and the checks must catch it.
    pub withhold_images: bool,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// The fleet's first loopback address index (see [`crate::fleet::FleetSpec::address_offset`]).
    pub address_offset: usize,
    /// What drives the rollout.
    pub driver: Driver,
    /// With the service: kill it (and open it again on its store) when this
    /// percentage of the nodes is done.
    pub kill_coordinator_at: Option<u8>,
}

impl RunConfig {
    /// The demo's run, the base other runs change: 1,000 nodes (3 of them
    /// control planes) in 3 zones from v1.30.2 to v1.30.3 through the
    /// coordinator service, 10% unavailable and 5% failures at most, steps of
    /// 5 to 40 ms, 2% of the nodes with a fault of any kind, no progress bar.
    pub fn demo(seed: u64) -> RunConfig {
        RunConfig {
            nodes: 1000,
            control_planes: 3,
            zones: 3,
            seed,
            from: Version::new(1, 30, 2),
            to: Version::new(1, 30, 3),
            max_unavailable: Limit::Percent(10),
            max_failures: Limit::Percent(5),
            per_zone: None,
            prestage: false,
            latency: LatencyRange { low_ms: 5, high_ms: 40 },
            fault_rate: 0.02,
            fault_kinds: FaultKind::ALL.to_vec(),
            concurrency: 64,
            poll_interval: Duration::from_millis(20),
            limit_overshoot: 0,
            withhold_images: false,
            progress: false,
            address_offset: 0,
            driver: Driver::Service,
            kill_coordinator_at: None,
        }
    }
}

/// What drives the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The one-shot engine, as `upkeep rollout` runs it.
    Cli,
    /// The coordinator service, through its HTTPS API.
    Service,
}
