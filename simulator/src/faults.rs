//! The fault plan: which node suffers which fault, and each node's step
//! latency, all derived from (seed, node index) before the run starts, so the
//! same seed gives the same plan and the same per-node outcomes.
//!
//! The static-pod faults (an image that crash-loops, an image that cannot be
//! pulled) are kinds like the others, drawn only for control-plane nodes,
//! the only ones with static pods: a worker draws from the other kinds, so
//! its plan for a seed is the one it had before these kinds existed, and one
//! `--faults` list covers both.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What can go wrong on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The staged artifact's bytes differ from the digest: refused at Stage.
    CorruptArtifact,
    /// The new binary's service will not start: PostCheck fails, rolled back.
    ServiceWontStart,
    /// The first restart hangs: the step times out, rolled back.
    HungStep,
    /// The agent is killed inside Swap and restarted from its saved state.
    AgentCrash,
    /// The node does not answer for a while.
    Unreachable,
    /// A disruption budget blocks the drain for a while, then allows it.
    DrainBlockedForAWhile,
    /// A disruption budget never allows the drain: it fails at its timeout.
    DrainBlockedForGood,
    /// Every step takes ten times as long.
    SlowNode,
    /// Every static-pod image the node did not start with crash-loops (never
    /// Ready, restarts growing): the agent rolls its manifest back.
    ImageCrashLoops,
    /// No image can be pulled on the node: Stage of its static pods fails.
    ImageUnpullable,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::CorruptArtifact,
        FaultKind::ServiceWontStart,
        FaultKind::HungStep,
        FaultKind::AgentCrash,
        FaultKind::Unreachable,
        FaultKind::DrainBlockedForAWhile,
        FaultKind::DrainBlockedForGood,
        FaultKind::SlowNode,
        FaultKind::ImageCrashLoops,
        FaultKind::ImageUnpullable,
    ];

    /// Whether only a control-plane node (with static pods) can have it.
    pub fn control_plane_only(self) -> bool {
        matches!(self, FaultKind::ImageCrashLoops | FaultKind::ImageUnpullable)
    }

    /// Whether a node with this fault ends in error (the rest recover).
    pub fn ends_in_error(self) -> bool {
        matches!(
            self,
            FaultKind::CorruptArtifact
                | FaultKind::ServiceWontStart
                | FaultKind::HungStep
                | FaultKind::DrainBlockedForGood
                | FaultKind::ImageCrashLoops
                | FaultKind::ImageUnpullable
        )
    }

    fn name(self) -> &'static str {
        match self {
            FaultKind::CorruptArtifact => "corrupt-artifact",
            FaultKind::ServiceWontStart => "service-wont-start",
            FaultKind::HungStep => "hung-step",
            FaultKind::AgentCrash => "agent-crash",
            FaultKind::Unreachable => "unreachable",
            FaultKind::DrainBlockedForAWhile => "drain-blocked-for-a-while",
            FaultKind::DrainBlockedForGood => "drain-blocked-for-good",
            FaultKind::SlowNode => "slow-node",
            FaultKind::ImageCrashLoops => "image-crash-loops",
            FaultKind::ImageUnpullable => "image-unpullable",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault {text:?}; known: {}", names.join(", "))
        })
    }
}

/// A uniform latency range for each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencyRange {
    /// Shortest, in milliseconds.
    pub low_ms: u64,
    /// Longest, in milliseconds.
    pub high_ms: u64,
}

impl FromStr for LatencyRange {
    type Err = String;

    /// `MS` or `LOW:HIGH` in milliseconds.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse =
            |t: &str| t.trim().parse::<u64>().map_err(|_| format!("{text:?} is not MS or LOW:HIGH in milliseconds"));
        let (low, high) = match text.split_once(':') {
            Some((low, high)) => (parse(low)?, parse(high)?),
            None => (parse(text)?, parse(text)?),
        };
        if low > high {
            return Err(format!("{text:?}: the low end is above the high end"));
        }
        Ok(LatencyRange { low_ms: low, high_ms: high })
    }
}

/// What the plan says about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// Its fault, if any.
    pub fault: Option<FaultKind>,
    /// Its step latency.
    pub step_latency_ms: u64,
    /// For `Unreachable`: when the outage starts (after the rollout starts) and how long it lasts.
    pub outage: Option<(u64, u64)>,
}

impl NodePlan {
    /// The node's step latency.
    pub fn step_latency(&self) -> Duration {
        Duration::from_millis(self.step_latency_ms)
    }
}

/// The per-node plan of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultPlan {
    /// The seed everything derives from.
    pub seed: u64,
    /// One entry per node.
    pub nodes: Vec<NodePlan>,
}

/// Derives one node's random stream from the run's seed.
pub fn node_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    key[16..24].copy_from_slice(b"upkeepsm");
    ChaCha8Rng::from_seed(key)
}

impl FaultPlan {
    /// The plan for `nodes` nodes, the first `control_planes` of them the
    /// control plane: each gets a fault with probability `fault_rate`, of a
    /// kind drawn from `kinds` (a worker from those not
    /// [`FaultKind::control_plane_only`]), and a latency from `latency`.
    pub fn derive(
        seed: u64,
        nodes: usize,
        control_planes: usize,
        fault_rate: f64,
        kinds: &[FaultKind],
        latency: LatencyRange,
    ) -> FaultPlan {
        let worker_kinds: Vec<FaultKind> = kinds.iter().copied().filter(|kind| !kind.control_plane_only()).collect();
        let nodes = (0..nodes)
            .map(|index| {
                let kinds = if index < control_planes { kinds } else { &worker_kinds[..] };
                let mut rng = node_rng(seed, index);
                let draw: f64 = rng.random();
                let fault = (draw < fault_rate && !kinds.is_empty()).then(|| kinds[rng.random_range(0..kinds.len())]);
                let mut step_latency_ms = rng.random_range(latency.low_ms..=latency.high_ms);
                if fault == Some(FaultKind::SlowNode) {
                    step_latency_ms = step_latency_ms.max(5) * 10;
                }
                let outage = (fault == Some(FaultKind::Unreachable))
                    .then(|| (rng.random_range(0..500), rng.random_range(300..1500)));
                NodePlan { fault, step_latency_ms, outage }
            })
            .collect();
        FaultPlan { seed, nodes }
    }

    /// How many nodes have each fault.
    pub fn counts(&self) -> Vec<(FaultKind, usize)> {
        FaultKind::ALL
            .iter()
            .map(|kind| (*kind, self.nodes.iter().filter(|n| n.fault == Some(*kind)).count()))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let latency = LatencyRange { low_ms: 0, high_ms: 20 };
        let a = FaultPlan::derive(7, 500, 3, 0.2, &FaultKind::ALL, latency);
        let b = FaultPlan::derive(7, 500, 3, 0.2, &FaultKind::ALL, latency);
        let c = FaultPlan::derive(8, 500, 3, 0.2, &FaultKind::ALL, latency);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let faulty = a.nodes.iter().filter(|n| n.fault.is_some()).count();
        assert!((50..150).contains(&faulty), "about 20% of 500: {faulty}");
    }

    #[test]
    fn a_node_keeps_its_plan_when_the_fleet_grows() {
        let latency = LatencyRange { low_ms: 1, high_ms: 9 };
        let small = FaultPlan::derive(3, 10, 3, 0.5, &FaultKind::ALL, latency);
        let large = FaultPlan::derive(3, 1000, 3, 0.5, &FaultKind::ALL, latency);
        assert_eq!(small.nodes[..], large.nodes[..10]);
    }

    #[test]
    fn static_pod_faults_land_on_control_plane_nodes_only() {
        let latency = LatencyRange { low_ms: 0, high_ms: 0 };
        let plan = FaultPlan::derive(5, 400, 3, 1.0, &FaultKind::ALL, latency);
        assert!(plan.nodes[3..].iter().all(|node| !node.fault.expect("every node has one").control_plane_only()));
        let forced = FaultPlan::derive(5, 10, 3, 1.0, &[FaultKind::ImageCrashLoops], latency);
        let faults: Vec<Option<FaultKind>> = forced.nodes.iter().map(|node| node.fault).collect();
        assert_eq!(faults[..3], [Some(FaultKind::ImageCrashLoops); 3]);
        assert!(faults[3..].iter().all(Option::is_none), "no worker has static pods: {faults:?}");
        let workers_before = FaultPlan::derive(5, 400, 0, 1.0, &FaultKind::ALL[..8], latency);
        assert_eq!(plan.nodes[3..], workers_before.nodes[3..], "a worker draws as it did before the new kinds");
    }

    #[test]
    fn parses_kinds_and_ranges() {
        assert_eq!("hung-step".parse::<FaultKind>(), Ok(FaultKind::HungStep));
        assert!("meteor".parse::<FaultKind>().is_err());
        assert_eq!("5:10".parse::<LatencyRange>(), Ok(LatencyRange { low_ms: 5, high_ms: 10 }));
        assert_eq!("0".parse::<LatencyRange>(), Ok(LatencyRange { low_ms: 0, high_ms: 0 }));
        assert!("10:5".parse::<LatencyRange>().is_err());
    }
}
