//! The checks at the end of a run, kept apart from the code that drives it.
//! Each looks at what the agents and machines say, not at the coordinator's
//! own book: the coordinator's counters are held against the agents' own
//! operations and versions, and the peak unavailability comes from the
//! machines' cordons, counted at every transition.

use serde::Serialize;
use upkeep_common::Version;
use upkeep_common::api::{NodePhase, OperationPhase};
use upkeep_coordinator::plan::NodeStatus;
use upkeep_coordinator::report::Counters;

use crate::host::binary_for;

pub mod control_plane;

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
    /// The phases of the agent's own upgrade operations toward the target,
    /// as the agent lists them; `None` when no agent runs on the node.
    pub upgrades: Option<Vec<OperationPhase>>,
}

/// Where a node ended, by its agent's own account and its machine's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// It runs the target (the coordinator counts it patched or skipped).
    AtTarget,
    /// The agent tried to reach the target and did not (counted in error).
    Failed,
    /// The agent never received an upgrade toward the target (counted pending).
    Untouched,
    /// An upgrade is still Pending or Running, or no agent runs: it belongs
    /// in no final counter.
    Unfinished,
}

impl FinalNode {
    /// Where the node ended, from the agent's operations and the machine.
    pub fn outcome(&self, target: &Version) -> AgentOutcome {
        let Some(upgrades) = &self.upgrades else { return AgentOutcome::Unfinished };
        if upgrades.iter().any(|phase| !phase.is_terminal()) {
            AgentOutcome::Unfinished
        } else if self.installed == binary_for(target) && self.observed.as_ref() == Some(target) {
            AgentOutcome::AtTarget
        } else if upgrades.is_empty() {
            AgentOutcome::Untouched
        } else {
            AgentOutcome::Failed
        }
    }
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
    let agents_say = |outcome: AgentOutcome| nodes.iter().filter(|n| n.outcome(target) == outcome).count();
    let unfinished: Vec<&str> =
        nodes.iter().filter(|n| n.outcome(target) == AgentOutcome::Unfinished).map(|n| n.name.as_str()).collect();
    if !unfinished.is_empty() {
        add("every_node_in_one_counter", format!("no final state on the node itself: {}", unfinished.join(", ")));
    }
    for (counter, counted, outcome) in [
        ("patched + skipped", counters.patched + counters.skipped, AgentOutcome::AtTarget),
        ("error", counters.error, AgentOutcome::Failed),
        ("pending", counters.pending, AgentOutcome::Untouched),
    ] {
        let actual = agents_say(outcome);
        if counted != actual {
            add("every_node_in_one_counter", format!("{counter} counts {counted} nodes, the agents say {actual}"));
        }
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
            upgrades: Some(vec![if installed == "v1.30.3" {
                OperationPhase::Succeeded
            } else {
                OperationPhase::RolledBack
            }]),
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
    fn counters_are_held_against_the_agents_not_the_journal() {
        let target = version("v1.30.3");
        let mut untouched = node(NodeStatus::Pending, "v1.30.2");
        untouched.upgrades = Some(Vec::new());
        let nodes = vec![node(NodeStatus::Patched, "v1.30.3"), node(NodeStatus::Failed, "v1.30.2"), untouched];
        let honest = Counters { patched: 1, skipped: 0, pending: 1, error: 1 };
        assert!(check_run(&nodes, &honest, &target, 1, 1).is_empty());
        // The same total, but one failed node counted patched: the journal could
        // agree with such counters, the agents do not.
        let lying = Counters { patched: 2, skipped: 0, pending: 1, error: 0 };
        let messages: Vec<String> = check_run(&nodes, &lying, &target, 1, 1)
            .into_iter()
            .filter(|v| v.check == "every_node_in_one_counter")
            .map(|v| v.message)
            .collect();
        assert_eq!(
            messages,
            ["patched + skipped counts 2 nodes, the agents say 1", "error counts 0 nodes, the agents say 1"]
        );
        let mut running = node(NodeStatus::Patched, "v1.30.3");
        running.upgrades = Some(vec![OperationPhase::Succeeded, OperationPhase::Running]);
        let mut gone = node(NodeStatus::Patched, "v1.30.3");
        gone.upgrades = None;
        let violations = check_run(&[running, gone], &counters(2, 0), &target, 1, 1);
        assert!(
            violations.iter().any(|v| v.message.starts_with("no final state on the node itself")),
            "{violations:?}"
        );
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
