//! Operations on a node and their steps, as `GET /v1/operations` reports them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ErrorObject;
use crate::ids::{OperationId, RequestToken};
use crate::version::Version;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Upgrade components to a target version.
    Upgrade,
    /// Return to the previous completed version from the kept backup.
    Rollback,
    /// Mark the node unschedulable.
    Cordon,
    /// Mark the node schedulable.
    Uncordon,
    /// Cordon and evict the node's pods.
    Drain,
}

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperationPhase {
    /// Accepted, not started.
    Pending,
    /// Running its steps.
    Running,
    /// Every step succeeded (or was skipped).
    Succeeded,
    /// A step failed before anything was changed, or the failure could not be undone.
    Failed,
    /// Cancelled before the swap; nothing was changed.
    Cancelled,
    /// A failure or a cancel after the swap put the old binaries back.
    RolledBack,
}

impl OperationPhase {
    /// Whether the operation has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, OperationPhase::Pending | OperationPhase::Running)
    }

    /// Whether this phase is further along than `other`: Pending, then
    /// Running, then any end (the ends are equally far).
    pub fn is_past(self, other: OperationPhase) -> bool {
        self.progress() > other.progress()
    }

    fn progress(self) -> u8 {
        match self {
            OperationPhase::Pending => 0,
            OperationPhase::Running => 1,
            _ => 2,
        }
    }
}

/// The steps of an upgrade, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StepName {
    /// Versions, skew, disk space, artifacts reachable, node state.
    PreCheck,
    /// Download, size limit, sha256 and signature, fsync.
    Stage,
    /// Mark the node unschedulable.
    Cordon,
    /// Evict the node's pods.
    Drain,
    /// Keep a backup and rename the new binary into place.
    Swap,
    /// Restart the component's service.
    Restart,
    /// The new version answers and is healthy.
    PostCheck,
    /// Mark the node schedulable again.
    Uncordon,
}

impl StepName {
    /// Every upgrade step in order.
    pub const UPGRADE: [StepName; 8] = [
        StepName::PreCheck,
        StepName::Stage,
        StepName::Cordon,
        StepName::Drain,
        StepName::Swap,
        StepName::Restart,
        StepName::PostCheck,
        StepName::Uncordon,
    ];
}

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepStatus {
    /// Not started.
    Init,
    /// Under way.
    Running,
    /// Done.
    Success,
    /// Failed; see the message.
    Failed,
    /// Not needed (for example no Kubernetes access configured).
    Skipped,
}

/// One step of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Which step.
    pub name: StepName,
    /// Its status.
    pub status: StepStatus,
    /// When it started.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// What happened, for a person.
    pub message: String,
}

/// A rule or check that `force` overrode, recorded in the operation and history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedRisk {
    /// A stable snake_case code such as `incremental_rule` or `drain_forced`.
    pub code: String,
    /// What was overridden, for a person.
    pub message: String,
}

/// One operation on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Its id, chosen by the agent.
    pub id: OperationId,
    /// The client's idempotency token, if it sent one.
    pub request_token: Option<RequestToken>,
    /// What it does.
    pub kind: OperationKind,
    /// The version before it, where versions apply.
    pub from_version: Option<Version>,
    /// The version it moves to, where versions apply.
    pub target_version: Option<Version>,
    /// Where it is.
    pub phase: OperationPhase,
    /// Its steps in order.
    pub steps: Vec<Step>,
    /// What went wrong, in the error envelope's inner shape.
    #[serde(default)]
    pub errors: Vec<ErrorObject>,
    /// When the request arrived.
    #[serde(serialize_with = "crate::api::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    /// When its first step started.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Who asked: the client certificate's common name and role.
    pub requested_by: String,
    /// What `force` overrode.
    #[serde(default)]
    pub accepted_risks: Vec<AcceptedRisk>,
    /// Whether it only ran PreCheck to report what would happen.
    #[serde(default)]
    pub dry_run: bool,
    /// Whether the node was already at the target, so nothing was done (reported as skipped).
    #[serde(default)]
    pub no_op: bool,
}

/// The body of `GET /v1/operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationList {
    /// The recent operations, newest first.
    pub operations: Vec<Operation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn past_means_further_along() {
        assert!(OperationPhase::Running.is_past(OperationPhase::Pending));
        assert!(OperationPhase::Succeeded.is_past(OperationPhase::Running));
        assert!(OperationPhase::RolledBack.is_past(OperationPhase::Pending));
        assert!(!OperationPhase::Running.is_past(OperationPhase::Running));
        assert!(!OperationPhase::Pending.is_past(OperationPhase::Running));
        assert!(!OperationPhase::Failed.is_past(OperationPhase::Succeeded), "the ends are equally far");
    }

    #[test]
    fn operation_field_names_are_fixed() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid time");
        let operation = Operation {
            id: "op-1".parse().expect("valid"),
            request_token: Some("tok-1".parse().expect("valid")),
            kind: OperationKind::Upgrade,
            from_version: Some("v1.30.2".parse().expect("valid")),
            target_version: Some("v1.31.0".parse().expect("valid")),
            phase: OperationPhase::Running,
            steps: vec![Step {
                name: StepName::PreCheck,
                status: StepStatus::Success,
                started_at: Some(at),
                finished_at: Some(at),
                message: "ok".into(),
            }],
            errors: vec![],
            created_at: at,
            started_at: Some(at),
            finished_at: None,
            requested_by: "ops (upkeep:operator)".into(),
            accepted_risks: vec![AcceptedRisk { code: "incremental_rule".into(), message: "skipped a minor".into() }],
            dry_run: false,
            no_op: false,
        };
        assert_eq!(
            serde_json::to_value(&operation).expect("ser"),
            serde_json::json!({
                "id": "op-1", "request_token": "tok-1", "kind": "upgrade",
                "from_version": "v1.30.2", "target_version": "v1.31.0", "phase": "Running",
                "steps": [{"name": "PreCheck", "status": "Success", "started_at": "2026-01-02T03:04:05Z",
                    "finished_at": "2026-01-02T03:04:05Z", "message": "ok"}],
                "errors": [], "created_at": "2026-01-02T03:04:05Z", "started_at": "2026-01-02T03:04:05Z",
                "finished_at": null, "requested_by": "ops (upkeep:operator)",
                "accepted_risks": [{"code": "incremental_rule", "message": "skipped a minor"}],
                "dry_run": false, "no_op": false
            })
        );
    }

    #[test]
    fn terminal_phases() {
        assert!(!OperationPhase::Pending.is_terminal());
        assert!(!OperationPhase::Running.is_terminal());
        assert!(OperationPhase::RolledBack.is_terminal());
    }
}
