//! What the engine saves: each operation with its private progress, and the
//! node record (history, Degraded reason, versions kept for rollback).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upkeep_common::Version;
use upkeep_common::api::{DrainOptions, HistoryEntry, Operation, OperationKind, Step, StepName, StepStatus};
use upkeep_common::ids::{ComponentName, Sha256};

/// One component's part in an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentPlan {
    /// The component.
    pub name: ComponentName,
    /// The file it replaces: its installed binary, or its static pod's manifest.
    #[serde(alias = "binary")]
    pub path: PathBuf,
    /// Where the new file is staged (in the component's work directory); for a
    /// rollback, the kept previous file.
    pub staged: PathBuf,
    /// Where the binary in place before this operation is kept until it ends.
    pub backup: PathBuf,
    /// The artifact's source (empty for a rollback).
    pub source: String,
    /// The digest the new binary must have.
    pub sha256: Option<Sha256>,
    /// The artifact's base64 ed25519 signature, if sent.
    pub signature: Option<String>,
    /// The version before the operation.
    pub from_version: Option<Version>,
    /// The version it moves to.
    pub to_version: Version,
    /// For a static pod: the image and the flags its manifest changes by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_pod: Option<StaticPodPlan>,
}

/// A static pod's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticPodPlan {
    /// The container whose image changes.
    pub container: String,
    /// The image it moves to (empty in a rollback, which puts the kept
    /// manifest back instead of writing one).
    pub image: String,
    /// The flags taken out of its arguments.
    pub remove_flags: Vec<String>,
}

impl ComponentPlan {
    /// The component's work directory, where staged files, backups and kept
    /// previous files live.
    pub fn work_dir(&self) -> PathBuf {
        self.staged.parent().map(PathBuf::from).unwrap_or_default()
    }
}

/// An operation as saved: the API view plus what the engine needs to resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// What `GET /v1/operations/{id}` shows.
    pub operation: Operation,
    /// A digest of the request, to tell a retry from a different request reusing a token.
    pub request_digest: String,
    /// The components it changes.
    pub plan: Vec<ComponentPlan>,
    /// Drain options from the request.
    pub drain: Option<DrainOptions>,
    /// Whether `force` was granted.
    pub force: bool,
    /// Whether this operation cordoned the node (and so must uncordon it).
    pub cordoned_by_us: bool,
    /// Whether the node was already cordoned by someone else.
    pub was_cordoned: bool,
    /// Whether a rollback of the swap is under way.
    pub rolling_back: bool,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Whether every artifact's signature was checked against a trusted key (a digest alone is not enough).
    pub verified: bool,
    /// Whether the operation only stages (prestaging for a later upgrade).
    #[serde(default)]
    pub stage_only: bool,
}

impl OperationRecord {
    /// The step named `name`, if the operation has it.
    pub fn step_mut(&mut self, name: StepName) -> Option<&mut Step> {
        self.operation.steps.iter_mut().find(|step| step.name == name)
    }

    /// Whether the swap has started (binaries may have changed).
    pub fn swap_started(&self) -> bool {
        self.operation.steps.iter().any(|step| step.name == StepName::Swap && step.status != StepStatus::Init)
    }
}

/// The steps of each kind of operation, in order.
pub fn steps_for(kind: OperationKind) -> &'static [StepName] {
    match kind {
        OperationKind::Upgrade | OperationKind::Rollback => &StepName::UPGRADE,
        OperationKind::Cordon => &[StepName::Cordon],
        OperationKind::Uncordon => &[StepName::Uncordon],
        OperationKind::Drain => &[StepName::Cordon, StepName::Drain],
    }
}

/// Fresh steps for a kind of operation.
pub fn initial_steps(kind: OperationKind) -> Vec<Step> {
    steps_for(kind)
        .iter()
        .map(|&name| Step {
            name,
            status: StepStatus::Init,
            started_at: None,
            finished_at: None,
            message: String::new(),
        })
        .collect()
}

/// Why the node needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DegradedReason {
    /// A CamelCase reason code.
    pub reason: String,
    /// A sentence for a person.
    pub message: String,
    /// When it became Degraded.
    #[serde(serialize_with = "upkeep_common::api::timestamp::serialize")]
    pub since: DateTime<Utc>,
}

/// A binary kept from before the last completed upgrade, for `POST /v1/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBinary {
    /// The component.
    pub component: ComponentName,
    /// Where the kept binary is.
    pub path: PathBuf,
    /// Its version.
    pub version: Version,
    /// Its digest, checked before it is put back.
    pub sha256: Sha256,
}

/// The node record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Past version changes, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Set while the node is Degraded.
    pub degraded: Option<DegradedReason>,
    /// Binaries kept from before the last completed upgrade.
    pub previous: Vec<KeptBinary>,
    /// Whether the node is cordoned, as the last cordon or uncordon left it.
    #[serde(default)]
    pub cordoned: bool,
}

impl NodeRecord {
    /// Adds `entry` to the history, replacing an entry of the same operation:
    /// an ending that a kill interrupted and that runs again records it once.
    pub fn record_history(&mut self, entry: HistoryEntry) {
        match self.history.iter_mut().find(|kept| kept.operation_id == entry.operation_id) {
            Some(kept) => *kept = entry,
            None => self.history.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upkeep_common::api::HistoryState;

    fn entry(operation: &str, state: HistoryState) -> HistoryEntry {
        HistoryEntry {
            operation_id: operation.parse().expect("valid"),
            version: "v1.30.3".parse().expect("valid"),
            from_version: None,
            state,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            completed_at: None,
            verified: false,
            accepted_risks: Vec::new(),
        }
    }

    #[test]
    fn an_operation_is_in_the_history_once() {
        let mut node = NodeRecord::default();
        node.record_history(entry("op-1", HistoryState::Completed));
        node.record_history(entry("op-2", HistoryState::Completed));
        node.record_history(entry("op-1", HistoryState::Completed));
        let ids: Vec<&str> = node.history.iter().map(|h| h.operation_id.as_str()).collect();
        assert_eq!(ids, ["op-1", "op-2"]);
    }
}
