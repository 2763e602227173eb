//! The checks at the end of a run, kept apart from the code that drives it.
//! Each looks at what the agents and machines say, not at the coordinator's
//! own book, except for the counters it must account for.

use serde::Serialize;
use upkeep_common::Version;
use upkeep_common::api::NodePhase;
use upkeep_coordinator::plan::NodeStatus;
use upkeep_coordinator::report::Counters;

use crate::host::binary_for;

/// One node as the checks see it at the end.
#[derive(Debug, Clone)]
pub struct FinalNode {
    /// Its name.
    pub name: String,
    /// Where the coordinator's journal left it.
    pub status: NodeStatus,
    /// Whether its Node is cordoned.
    pub cordoned: bool,
    /// Its installed binary.
    pub installed: Vec<u8>,
    /// The version it started at.
    pub initial: Version,
    /// What its agent observes now.
    pub observed: Option<Version>,
    /// Its agent's phase.
    pub phase: NodePhase,
    /// How many times a new binary was renamed into place.
    pub swaps: u32,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which check.
    pub check: &'static str,
    /// What is wrong, naming the node where there is one.
    pub message: String,
}

/// Runs every check.
pub fn check_run(
    nodes: &[FinalNode],
    counters: &Counters,
    target: &Version,
    max_unavailable: usize,
    peak_unavailable: usize,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut add = |check: &'static str, message: String| violations.push(Violation { check, message });
    let total = counters.patched + counters.skipped + counters.pending + counters.error;
    if total != nodes.len() {
        add("every_node_in_one_counter", format!("counters add up to {total}, the fleet has {}", nodes.len()));
    }
    let in_flight = nodes.iter().filter(|n| n.status.is_active()).count();
    if in_flight > 0 {
        add("every_node_in_one_counter", format!("{in_flight} nodes were still in flight at the end"));
    }
    if peak_unavailable > max_unavailable {
        add(
            "unavailable_within_limit",
            format!("{peak_unavailable} nodes were unavailable at once; the limit is {max_unavailable}"),
        );
    }
    let target_bytes = binary_for(target);
    for node in nodes {
        let in_error = node.status == NodeStatus::Failed;
        if node.cordoned && !in_error {
            add("none_left_cordoned", format!("{} is cordoned but not in error", node.name));
        }
        if node.swaps > 1 {
            add("no_node_upgraded_twice", format!("{} had a new binary put in place {} times", node.name, node.swaps));
        }
        match node.status {
            NodeStatus::Patched => {
                if node.installed != target_bytes || node.observed.as_ref() != Some(target) {
                    add("patched_at_target", format!("{} is counted patched but runs {:?}", node.name, node.observed));
                }
            }
            NodeStatus::Failed => {
                let old_bytes = node.installed == binary_for(&node.initial);
                if !old_bytes && node.phase != NodePhase::Degraded {
                    add(
                        "failed_back_or_degraded",
                        format!("{} failed but is neither on its old bytes nor Degraded", node.name),
                    );
                }
            }
            NodeStatus::Skipped => {
                if node.observed.as_ref() != Some(target) {
                    add("patched_at_target", format!("{} is counted skipped but runs {:?}", node.name, node.observed));
                }
            }
            NodeStatus::Pending | NodeStatus::InFlight | NodeStatus::Soaking { .. } => {
                if node.installed != binary_for(&node.initial) {
                    add("pending_untouched", format!("{} is counted pending but its binary changed", node.name));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        text.parse().expect("valid")
    }

    fn node(status: NodeStatus, installed: &str) -> FinalNode {
        FinalNode {
            name: "worker-1".into(),
            status,
            cordoned: false,
            installed: binary_for(&version(installed)),
            initial: version("v1.30.2"),
            observed: Some(version(installed)),
            phase: NodePhase::Idle,
            swaps: u32::from(installed == "v1.30.3"),
        }
    }

    fn counters(patched: usize, error: usize) -> Counters {
        Counters { patched, skipped: 0, pending: 0, error }
    }

    #[test]
    fn a_clean_run_passes() {
        let nodes = vec![node(NodeStatus::Patched, "v1.30.3"), node(NodeStatus::Failed, "v1.30.2")];
        assert!(check_run(&nodes, &counters(1, 1), &version("v1.30.3"), 1, 1).is_empty());
    }

    #[test]
    fn every_broken_promise_is_named() {
        let target = version("v1.30.3");
        let mut lying = node(NodeStatus::Patched, "v1.30.2");
        lying.cordoned = true;
        lying.swaps = 2;
        let mut half = node(NodeStatus::Failed, "v1.30.3");
        half.phase = NodePhase::Idle;
        let violations = check_run(&[lying, half], &counters(1, 0), &target, 1, 3);
        let checks: Vec<&str> = violations.iter().map(|v| v.check).collect();
        assert_eq!(
            checks,
            [
                "every_node_in_one_counter",
                "unavailable_within_limit",
                "none_left_cordoned",
                "no_node_upgraded_twice",
                "patched_at_target",
                "failed_back_or_degraded"
            ]
        );
    }
}
