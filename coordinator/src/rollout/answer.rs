//! What an agent's answers mean for one node, as pure functions: whether an
//! operation is the one that was asked for, whether its phase only moves
//! forward, how it ended, and whether the node it reports is the inventory's
//! node at the target. An answer that does not match is an error for that
//! node, never success.

use upkeep_common::Version;
use upkeep_common::api::{
    Artifact, ConditionStatus, ConditionType, NodePhase, NodeState, Operation, OperationKind, OperationPhase,
    UpgradeRequest,
};
use upkeep_common::ids::{ComponentName, NodeName, OperationId};

use crate::client::ClientError;

/// A node's problem as a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The step that failed, if the agent named one.
    pub step: Option<String>,
    /// A stable code.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl Problem {
    /// A problem no step is named for.
    pub fn new(code: &str, message: String) -> Problem {
        Problem { step: None, code: code.to_owned(), message }
    }

    /// A call that failed: its report code and what it says.
    pub fn of_call(error: &ClientError) -> Problem {
        Problem::new(&error.report_code(), error.to_string())
    }
}

/// Checks an answer about the operation started by `request`: the same id as
/// before (once known), kind Upgrade, the asked target and token, and a phase
/// that does not go back.
pub fn check_operation(
    request: &UpgradeRequest,
    known: Option<(&OperationId, OperationPhase)>,
    answer: &Operation,
) -> Result<(), Problem> {
    if let Some((id, _)) = known.filter(|(id, _)| &answer.id != *id) {
        return Err(Problem::new(
            "operation_mismatch",
            format!("asked about operation {id}, the agent answered about operation {}", answer.id),
        ));
    }
    if answer.kind != OperationKind::Upgrade {
        return Err(Problem::new(
            "operation_mismatch",
            format!("asked for an upgrade, the agent answered with a {:?} operation {}", answer.kind, answer.id),
        ));
    }
    if answer.target_version.as_ref() != Some(&request.target_version) {
        let answered = answer.target_version.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string);
        return Err(Problem::new(
            "operation_mismatch",
            format!(
                "asked for an upgrade to {}, the agent's operation {} targets {answered}",
                request.target_version, answer.id
            ),
        ));
    }
    if let (Some(asked), Some(answered)) = (&request.request_token, &answer.request_token)
        && asked != answered
    {
        return Err(Problem::new(
            "operation_mismatch",
            format!("sent request token {asked}, the agent's operation {} carries {answered}", answer.id),
        ));
    }
    let went_back =
        |before: OperationPhase| before.is_past(answer.phase) || (before.is_terminal() && answer.phase != before);
    if let Some((_, before)) = known.filter(|(_, before)| went_back(*before)) {
        return Err(Problem::new(
            "operation_phase_regressed",
            format!("operation {} went from {before:?} back to {:?}", answer.id, answer.phase),
        ));
    }
    Ok(())
}

/// How an ended operation ended for the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It did the work (or, for a stage-only request, staged).
    Succeeded,
    /// The node was already at the target.
    AlreadyThere,
    /// It failed; `rolled_back` when the agent put the old binaries back.
    Failed {
        /// The agent's step, code and message.
        problem: Problem,
        /// Whether the operation ended RolledBack.
        rolled_back: bool,
    },
}

/// What an ended operation means.
pub fn ending(operation: &Operation) -> Ending {
    match operation.phase {
        OperationPhase::Succeeded if operation.no_op => Ending::AlreadyThere,
        OperationPhase::Succeeded => Ending::Succeeded,
        phase => {
            let detail = operation.errors.first().and_then(|e| e.details.first());
            let code = detail.map_or_else(|| format!("{phase:?}").to_lowercase(), |d| d.code.clone());
            let message =
                operation.errors.first().map_or_else(|| format!("operation ended {phase:?}"), |e| e.message.clone());
            Ending::Failed {
                problem: Problem { step: detail.map(|d| d.field.clone()), code, message },
                rolled_back: phase == OperationPhase::RolledBack,
            }
        }
    }
}

/// Checks that the agent at a node's address speaks for that node.
pub fn check_name(inventory_name: &NodeName, address: &str, state: &NodeState) -> Result<(), Problem> {
    if &state.name == inventory_name {
        return Ok(());
    }
    Err(Problem::new(
        "node_name_mismatch",
        format!("the inventory lists {inventory_name} at {address}, but the agent there reports node {}", state.name),
    ))
}

/// Whether every artifact's component reports `target` as its observed version.
pub fn at_target(state: &NodeState, artifacts: &[Artifact], target: &Version) -> bool {
    !artifacts.is_empty()
        && artifacts.iter().all(|artifact| {
            state.components.iter().any(|c| c.name == artifact.component && c.observed_version.as_ref() == Some(target))
        })
}

/// Checks the node after its operation `id` ended Succeeded: it is the
/// inventory's node, no longer runs that operation, and every component the
/// request names reports its wanted version.
pub fn check_finished_node(
    inventory_name: &NodeName,
    address: &str,
    id: &OperationId,
    request: &UpgradeRequest,
    state: &NodeState,
) -> Result<(), Problem> {
    check_name(inventory_name, address, state)?;
    if state.phase == NodePhase::Upgrading && state.current_operation.as_ref() == Some(id) {
        return Err(Problem::new(
            "operation_phase_regressed",
            format!("operation {id} was reported Succeeded, but the node still runs it"),
        ));
    }
    let observed_of = |name: &ComponentName| {
        state.components.iter().find(|c| &c.name == name).and_then(|c| c.observed_version.as_ref())
    };
    let wanted = request.wanted_versions();
    let missed: Vec<String> = wanted
        .iter()
        .filter(|(name, version)| observed_of(name) != Some(version))
        .map(|(name, version)| {
            let seen = observed_of(name).map_or_else(|| "no version".to_owned(), ToString::to_string);
            format!("{name} reports {seen}, not {version}")
        })
        .collect();
    if !wanted.is_empty() && missed.is_empty() {
        return Ok(());
    }
    Err(Problem::new("version_not_reached", format!("operation {id} ended Succeeded, but {}", missed.join(", "))))
}

/// Whether a node counts against `max_unavailable` before it is started:
/// cordoned, Degraded, or its components do not answer.
pub fn counts_unavailable(state: &NodeState) -> bool {
    let not_available = state
        .conditions
        .iter()
        .any(|condition| condition.kind == ConditionType::Available && condition.status == ConditionStatus::False);
    state.cordoned || state.phase == NodePhase::Degraded || not_available
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
