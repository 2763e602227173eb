//! The rollout planner: pure, no I/O, time as a parameter.
//!
//! Given every node's progress and observed availability, [`plan`] says which
//! nodes to start now:
//!
//! - Control-plane nodes first, one at a time; a control-plane failure halts
//!   the rollout.
//! - Then workers, never letting more than `max_unavailable` nodes be
//!   unavailable at once, counting nodes that are already unavailable
//!   (cordoned, unreachable, Degraded) against the limit, and at most
//!   `per_zone` at once in one zone.
//! - Once failures pass `max_failures`, no new node starts (running ones finish).
//! - After a node is patched it soaks for `soak_ms`, still counted unavailable,
//!   before its slot is reused.
//! - When nothing runs and nothing may start while nodes are pending, the plan
//!   says so instead of waiting forever.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use upkeep_common::api::NodeRole;

mod limit;
pub use limit::Limit;

/// The rollout's limits, resolved to counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Nodes that may be unavailable at once (at least 1).
    pub max_unavailable: usize,
    /// Failures tolerated before no new node starts.
    pub max_failures: usize,
    /// Nodes of one zone that may be in flight at once.
    pub per_zone: Option<usize>,
    /// How long a patched node soaks before its slot is reused, in milliseconds.
    pub soak_ms: u64,
}

/// Where a node is in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NodeStatus {
    /// Not started.
    Pending,
    /// Its upgrade is running.
    InFlight,
    /// Patched, and must stay Ready until `until_ms`.
    Soaking {
        /// When the soak ends.
        until_ms: u64,
    },
    /// Upgraded.
    Patched,
    /// Already at the target.
    Skipped,
    /// Its upgrade failed.
    Failed,
}

impl NodeStatus {
    /// Whether the node is being worked on (and so unavailable).
    pub fn is_active(self) -> bool {
        matches!(self, NodeStatus::InFlight | NodeStatus::Soaking { .. })
    }
}

/// What the planner knows of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNode {
    /// Control plane or worker.
    pub role: NodeRole,
    /// Its zone label.
    pub zone: Option<String>,
    /// Its progress.
    pub status: NodeStatus,
    /// Whether it was seen unavailable (cordoned, unreachable, Degraded).
    pub unavailable: bool,
}

/// Why no new node starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Halt {
    /// A control-plane node failed.
    ControlPlaneFailed,
    /// Failures passed `max_failures`.
    FailureBudget {
        /// Failures so far.
        failures: usize,
    },
    /// The rollout was paused or aborted.
    Stopped,
    /// Nothing runs and nothing may start: too many nodes are unavailable already.
    Blocked {
        /// Nodes unavailable now.
        unavailable: usize,
    },
    /// After a stop, the wait for running nodes ended with these still running:
    /// they count as pending, and a resume asks them again with their tokens.
    StopWaitEnded {
        /// Nodes still running or soaking.
        running: usize,
    },
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::ControlPlaneFailed => f.write_str("a control-plane node failed"),
            Halt::FailureBudget { failures } => write!(f, "{failures} failures passed the failure budget"),
            Halt::Stopped => f.write_str("the rollout was stopped"),
            Halt::Blocked { unavailable } => {
                write!(f, "{unavailable} nodes are unavailable already, so no node may start within the limit")
            }
            Halt::StopWaitEnded { running } => write!(
                f,
                "the rollout was stopped and {running} nodes were still running when the wait for them ended; \
                 they count as pending (resume asks them again)"
            ),
        }
    }
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Nodes to start now (indexes).
    pub start: Vec<usize>,
    /// Soaking nodes whose soak has ended (indexes): check they are Ready.
    pub end_soak: Vec<usize>,
    /// Why no new node starts, if so.
    pub halt: Option<Halt>,
    /// Whether the rollout is over (nothing runs, and nothing more will start).
    pub complete: bool,
}

/// Decides what to do now, in one pass over the nodes to count and one to
/// choose (which stops once nothing more can start), plus one over the
/// active nodes under a per-zone limit: a decision costs the fleet's size,
/// not a multiple of it.
pub fn plan(nodes: &[PlanNode], limits: &Limits, stopped: bool, now_ms: u64) -> Plan {
    let tally = Tally::of(nodes, now_ms);
    let halt = if tally.control_plane_failed {
        Some(Halt::ControlPlaneFailed)
    } else if tally.failures > limits.max_failures {
        Some(Halt::FailureBudget { failures: tally.failures })
    } else if stopped {
        Some(Halt::Stopped)
    } else {
        None
    };
    let mut result = Plan { halt, ..Plan::default() };
    if result.halt.is_none() && tally.pending > 0 {
        result.start = choose(nodes, limits, &tally);
        if result.start.is_empty() && tally.active == 0 {
            result.halt = Some(Halt::Blocked { unavailable: tally.seen_unavailable });
        }
    }
    result.complete = tally.active == 0 && result.start.is_empty() && (tally.pending == 0 || result.halt.is_some());
    result.end_soak = tally.end_soak;
    result
}

/// What one pass over the nodes counts.
#[derive(Debug, Default)]
struct Tally {
    /// Soaking nodes whose soak has ended.
    end_soak: Vec<usize>,
    failures: usize,
    /// In flight or soaking.
    active: usize,
    pending: usize,
    /// Active, or seen unavailable: what counts against `max_unavailable`.
    unavailable: usize,
    /// Seen unavailable (cordoned, unreachable, Degraded), whatever their progress.
    seen_unavailable: usize,
    /// Pending and seen unavailable: these start without costing a slot.
    pending_seen_unavailable: usize,
    control_plane_failed: bool,
    control_plane_active: bool,
    /// The first pending control-plane node.
    control_plane_pending: Option<usize>,
}

impl Tally {
    fn of(nodes: &[PlanNode], now_ms: u64) -> Tally {
        let mut tally = Tally::default();
        for (index, node) in nodes.iter().enumerate() {
            let control_plane = node.role == NodeRole::ControlPlane;
            let active = node.status.is_active();
            match node.status {
                NodeStatus::Soaking { until_ms } if until_ms <= now_ms => tally.end_soak.push(index),
                NodeStatus::Failed => {
                    tally.failures += 1;
                    tally.control_plane_failed |= control_plane;
                }
                NodeStatus::Pending => {
                    tally.pending += 1;
                    tally.pending_seen_unavailable += usize::from(node.unavailable);
                    if control_plane && tally.control_plane_pending.is_none() {
                        tally.control_plane_pending = Some(index);
                    }
                }
                _ => {}
            }
            tally.active += usize::from(active);
            tally.control_plane_active |= control_plane && active;
            tally.unavailable += usize::from(active || node.unavailable);
            tally.seen_unavailable += usize::from(node.unavailable);
        }
        tally
    }
}

fn choose(nodes: &[PlanNode], limits: &Limits, tally: &Tally) -> Vec<usize> {
    if tally.control_plane_active {
        return Vec::new();
    }
    let mut unavailable = tally.unavailable;
    if let Some(index) = tally.control_plane_pending {
        let cost = usize::from(!nodes[index].unavailable);
        return if unavailable + cost <= limits.max_unavailable { vec![index] } else { Vec::new() };
    }
    let mut per_zone: HashMap<Option<&str>, usize> = HashMap::new();
    if limits.per_zone.is_some() {
        for node in nodes.iter().filter(|n| n.status.is_active()) {
            *per_zone.entry(node.zone.as_deref()).or_default() += 1;
        }
    }
    let mut start = Vec::new();
    // Pending nodes seen unavailable start without costing a slot, so a full
    // budget stops the choice only once none of them is left further on.
    let mut free_left = tally.pending_seen_unavailable;
    for (index, node) in nodes.iter().enumerate() {
        if unavailable >= limits.max_unavailable && free_left == 0 {
            break;
        }
        if node.status != NodeStatus::Pending {
            continue;
        }
        free_left -= usize::from(node.unavailable);
        let cost = usize::from(!node.unavailable);
        if unavailable + cost > limits.max_unavailable {
            continue;
        }
        if let Some(limit) = limits.per_zone {
            let in_zone = per_zone.entry(node.zone.as_deref()).or_default();
            if *in_zone >= limit {
                continue;
            }
            *in_zone += 1;
        }
        unavailable += cost;
        start.push(index);
    }
    start
}

/// The waves a rollout would run if every node succeeded at once and none was
/// unavailable: for `--dry-run`.
pub fn dry_run_waves(roles: &[(NodeRole, Option<String>)], limits: &Limits) -> Vec<Vec<usize>> {
    let mut nodes: Vec<PlanNode> = roles
        .iter()
        .map(|(role, zone)| PlanNode {
            role: *role,
            zone: zone.clone(),
            status: NodeStatus::Pending,
            unavailable: false,
        })
        .collect();
    let mut waves = Vec::new();
    loop {
        let next = plan(&nodes, limits, false, 0);
        if next.start.is_empty() {
            return waves;
        }
        for &index in &next.start {
            nodes[index].status = NodeStatus::Patched;
        }
        waves.push(next.start);
    }
}

#[cfg(test)]
mod tests;
