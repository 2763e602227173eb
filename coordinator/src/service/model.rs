//! The service's records, as stored and as its API answers them: a cluster's
//! spec, an update with its workflow tasks, errors and counters, the history,
//! and the update's events. Field names follow DESIGN.md §6.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use upkeep_common::Version;

use crate::plan::{Halt, Limits};
use crate::report::Counters;

/// What a platform asked of a cluster: the part an `ETag` covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The desired version, once one was asked for.
    pub version: Option<Version>,
    /// The release channel the cluster follows.
    pub channel: String,
    /// Bumped by every change of the spec.
    pub generation: u64,
}

impl ClusterSpec {
    /// The entity tag of the spec (quoted, as HTTP wants it): progress never changes it.
    pub fn etag(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16])
    }
}

/// What kind of change an update makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateType {
    /// To a newer version.
    VersionUpdate,
    /// Back to the previous version.
    Rollback,
}

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStatus {
    /// Running.
    InProgress,
    /// Starts no node until resumed.
    Paused,
    /// Ended with errors.
    Failed,
    /// Stopped for good by an operator.
    Cancelled,
    /// Every node at the target (or already there).
    Successful,
}

impl UpdateStatus {
    /// Whether the update has ended.
    pub fn is_final(self) -> bool {
        matches!(self, UpdateStatus::Failed | UpdateStatus::Cancelled | UpdateStatus::Successful)
    }
}

/// The steps of an update's workflow, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskType {
    /// Every node answers, the catalog has every artifact, an agent dry run on every node.
    PreCheck,
    /// The artifacts staged on every node, each node's version recorded.
    Snapshot,
    /// Control plane first, then workers in waves.
    Upgrade,
    /// Every patched node reports the target.
    PostCheck,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Not started.
    Init,
    /// Next to start.
    Queuing,
    /// Running.
    Running,
    /// Done.
    Success,
    /// Ended with errors.
    Failed,
}

/// One task of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Which step.
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// Where it is.
    pub status: TaskStatus,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// What it did or why it failed.
    pub message: String,
}

/// One parameter of an update, as EKS lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateParam {
    /// `Version`, `Force`, `DryRun`, `MaxUnavailable`...
    #[serde(rename = "type")]
    pub kind: String,
    /// Its value.
    pub value: String,
}

/// One error of an update, with the nodes it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateError {
    /// A stable code.
    pub error_code: String,
    /// What happened.
    pub error_message: String,
    /// The task it happened in.
    pub task: TaskType,
    /// The nodes concerned.
    pub resource_ids: Vec<String>,
}

/// The counters, split by role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleCounters {
    /// Control-plane nodes.
    pub control_plane: Counters,
    /// Workers.
    pub workers: Counters,
}

/// An update: one change of a cluster's version, with its workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Its id; request tokens to agents derive from it and the node.
    pub id: String,
    /// The cluster.
    pub cluster: String,
    /// What kind of change.
    #[serde(rename = "type")]
    pub kind: UpdateType,
    /// The parameters it was asked with.
    pub params: Vec<UpdateParam>,
    /// The version it moves to.
    pub target_version: Version,
    /// Where it is.
    pub status: UpdateStatus,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Who asked (the client certificate's name).
    pub requested_by: String,
    /// The caller's idempotency token, if any.
    pub request_token: Option<String>,
    /// Whether the incremental rule was overridden.
    pub force: bool,
    /// The catalog's risks accepted by asking for it anyway.
    pub accepted_risks: Vec<String>,
    /// The limits it runs under, resolved against the fleet.
    pub limits: Limits,
    /// Whether the artifacts are staged on every node before any swap.
    pub prestage: bool,
    /// The longest one node may take, in seconds.
    pub node_timeout_secs: u64,
    /// Its errors.
    pub errors: Vec<UpdateError>,
    /// Its workflow.
    pub tasks: Vec<Task>,
    /// Why no node starts now, when none does.
    pub waiting: Option<Waiting>,
    /// Nodes by outcome.
    pub counters: RoleCounters,
}

impl Update {
    /// The task of `kind`.
    pub fn task_mut(&mut self, kind: TaskType) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|task| task.kind == kind)
    }

    /// Whether the update was asked as a dry run (PreCheck only).
    pub fn is_dry_run(&self) -> bool {
        self.params.iter().any(|param| param.kind == "DryRun" && param.value == "true")
    }

    /// The tasks of a new update: the first queuing, the others not started.
    pub fn fresh_tasks() -> Vec<Task> {
        [TaskType::PreCheck, TaskType::Snapshot, TaskType::Upgrade, TaskType::PostCheck]
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Task {
                kind,
                status: if index == 0 { TaskStatus::Queuing } else { TaskStatus::Init },
                started_at: None,
                ended_at: None,
                message: String::new(),
            })
            .collect()
    }
}

/// Why an update starts no node now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// `paused`, `halted`...
    pub reason: String,
    /// What it waits for.
    pub message: String,
}

/// How a past update ended, for the cluster's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryState {
    /// Every node reached the version.
    Completed,
    /// Some nodes did not.
    Partial,
}

/// One entry of the cluster's history (newest first, bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version.
    pub version: Version,
    /// How it ended.
    pub state: HistoryState,
    /// The update.
    pub update: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: DateTime<Utc>,
    /// Whether PostCheck saw every patched node at the version.
    pub verified: bool,
    /// The risks accepted.
    pub accepted_risks: Vec<String>,
}

/// The most history entries a cluster keeps.
pub const MAX_HISTORY: usize = 50;

/// One event of an update, as stored and streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateEvent {
    /// Its position in the update's events, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A task changed status.
    Task {
        /// The task.
        task: TaskType,
        /// Its new status.
        status: TaskStatus,
        /// Why.
        message: String,
    },
    /// A node's upgrade started.
    NodeStarted {
        /// The node.
        node: String,
    },
    /// A node finished.
    NodeFinished {
        /// The node.
        node: String,
        /// patched, skipped or error.
        outcome: String,
        /// The error code, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        /// The counters after it.
        counters: RoleCounters,
    },
    /// No new node starts.
    Halted {
        /// Why.
        reason: Halt,
    },
    /// The update's status changed.
    Status {
        /// The new status.
        status: UpdateStatus,
    },
}
