//! The engine's part of the node view: phase, cordon marker, current operation,
//! desired versions, history and the Progressing and Degraded conditions, as a
//! pure projection of the engine's records.

use chrono::{DateTime, Utc};
use upkeep_common::api::{Condition, ConditionStatus, ConditionType, NodePhase, NodeState};

use crate::engine::record::{NodeRecord, OperationRecord};

/// Writes the engine's state into `view`. `current` is the running operation, if any.
pub fn project(view: &mut NodeState, node: &NodeRecord, current: Option<&OperationRecord>, now: DateTime<Utc>) {
    view.cordoned = node.cordoned;
    view.current_operation = current.map(|record| record.operation.id.clone());
    view.history.clone_from(&node.history);
    view.phase = match (current, &node.degraded) {
        (Some(_), _) => NodePhase::Upgrading,
        (None, Some(_)) => NodePhase::Degraded,
        (None, None) => NodePhase::Idle,
    };
    for component in &mut view.components {
        component.desired_version = current
            .and_then(|record| record.plan.iter().find(|p| p.name == component.name))
            .map(|p| p.to_version.clone());
    }
    match current {
        Some(record) => Condition::set(
            &mut view.conditions,
            ConditionType::Progressing,
            ConditionStatus::True,
            "OperationRunning",
            &format!("{:?} {} is running", record.operation.kind, record.operation.id),
            now,
        ),
        None => Condition::set(
            &mut view.conditions,
            ConditionType::Progressing,
            ConditionStatus::False,
            "NoOperation",
            "",
            now,
        ),
    }
    match &node.degraded {
        Some(degraded) => Condition::set(
            &mut view.conditions,
            ConditionType::Degraded,
            ConditionStatus::True,
            &degraded.reason,
            &degraded.message,
            degraded.since,
        ),
        None => {
            Condition::set(&mut view.conditions, ConditionType::Degraded, ConditionStatus::False, "Healthy", "", now)
        }
    }
}
