//! The rollout's events as an update's: node events stored with their
//! sequence numbers, the counters split by role, and each failed node added
//! to the update's errors under its code.

use std::collections::HashMap;
use std::sync::Arc;

use upkeep_common::api::NodeRole;

use crate::journal::{Journal, NodeError};
use crate::plan::NodeStatus;
use crate::report::{Counters, Event, EventSink};

use super::log::UpdateLog;
use super::model::{EventKind, RoleCounters, TaskType, Update, UpdateError};

/// Reports a rollout's events into an update's log.
pub struct UpdateSink {
    /// The update's log.
    pub log: Arc<UpdateLog>,
    /// Each node's role.
    pub roles: Arc<HashMap<String, NodeRole>>,
    /// The task the rollout runs in.
    pub task: TaskType,
}

impl EventSink for UpdateSink {
    fn event(&mut self, event: &Event) {
        match event {
            Event::NodeStarted { node, .. } => self.log.push(EventKind::NodeStarted { node: node.clone() }),
            Event::NodeFinished { node, outcome, error, .. } => {
                let role = self.roles.get(node).copied().unwrap_or(NodeRole::Worker);
                let to = match outcome.as_str() {
                    "patched" => NodeStatus::Patched,
                    "skipped" => NodeStatus::Skipped,
                    _ => NodeStatus::Failed,
                };
                let counters = self.log.edit(|update| {
                    let mut counters = update.counters;
                    side_of(role, &mut counters).moved(NodeStatus::Pending, to);
                    update.counters = counters;
                    if let Some(error) = error {
                        add_node_error(update, self.task, error);
                    }
                    counters
                });
                let error_code = error.as_ref().map(|e| e.code.clone());
                self.log.push(EventKind::NodeFinished {
                    node: node.clone(),
                    outcome: outcome.clone(),
                    error_code,
                    counters,
                });
            }
            Event::Halted { reason } => self.log.push(EventKind::Halted { reason: reason.clone() }),
            // A control-plane node's static pods: its counters move once, when
            // its kubelet is done (a failure here ends it through NodeFinished).
            Event::Started { .. } | Event::Summary { .. } | Event::StaticPodsFinished { .. } => {}
        }
    }
}

/// Adds a node's error to the update's errors: under the error of the same
/// task and code when there is one, else as a new one.
pub fn add_node_error(update: &mut Update, task: TaskType, error: &NodeError) {
    let node = error.node.to_string();
    let step = error.step.as_deref().map(|s| format!(" (step {s})")).unwrap_or_default();
    match update.errors.iter_mut().find(|e| e.task == task && e.error_code == error.code) {
        Some(existing) => {
            if !existing.resource_ids.contains(&node) {
                existing.resource_ids.push(node);
            }
        }
        None => update.errors.push(UpdateError {
            error_code: error.code.clone(),
            error_message: format!("{node}{step}: {}", error.message),
            task,
            resource_ids: vec![node],
        }),
    }
}

/// The counters of one role.
fn side_of(role: NodeRole, counters: &mut RoleCounters) -> &mut Counters {
    match role {
        NodeRole::ControlPlane => &mut counters.control_plane,
        NodeRole::Worker => &mut counters.workers,
    }
}

/// The counters by role of a journal's nodes.
pub fn role_counters(journal: &Journal, roles: &HashMap<String, NodeRole>) -> RoleCounters {
    let mut counters = RoleCounters::default();
    for node in &journal.nodes {
        let side = side_of(roles.get(node.name.as_str()).copied().unwrap_or(NodeRole::Worker), &mut counters);
        side.pending += 1;
        side.moved(NodeStatus::Pending, node.status);
    }
    counters
}
