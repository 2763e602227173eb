//! Building the record of a new operation from its request: ids, steps, the
//! per-component plan and the no-op case. Pure but for the id's randomness and
//! the clock, both passed in by the caller where it matters.

use chrono::{DateTime, Utc};
use rand::RngExt;
use upkeep_common::api::{AcceptedRisk, Operation, OperationKind, OperationPhase, StepStatus, UpgradeRequest};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_common::{Identity, Version};

use crate::config::ComponentConfig;
use crate::engine::admission::Admission;
use crate::engine::record::{ComponentPlan, KeptBinary, OperationRecord, initial_steps};
use crate::host::files::work_dir;

/// A new operation id from the time and a random suffix.
pub fn new_operation_id(now: DateTime<Utc>) -> OperationId {
    let suffix: u32 = rand::rng().random();
    let id = format!("op-{}-{suffix:08x}", now.format("%Y%m%dT%H%M%S%3f"));
    id.parse().expect("operation ids are made of letters, digits and '-'")
}

/// What a new record is made of.
pub struct NewRecord<'a> {
    /// Its id.
    pub id: OperationId,
    /// Its kind.
    pub kind: OperationKind,
    /// Who asked.
    pub identity: &'a Identity,
    /// Its request token.
    pub token: Option<RequestToken>,
    /// The digest of its request.
    pub request_digest: String,
    /// The version before.
    pub from_version: Option<Version>,
    /// The version after.
    pub target_version: Option<Version>,
    /// When it was asked for.
    pub now: DateTime<Utc>,
}

/// A Pending record with fresh steps and no plan.
pub fn new_record(new: NewRecord<'_>) -> OperationRecord {
    OperationRecord {
        operation: Operation {
            id: new.id,
            request_token: new.token,
            kind: new.kind,
            from_version: new.from_version,
            target_version: new.target_version,
            phase: OperationPhase::Pending,
            steps: initial_steps(new.kind),
            errors: Vec::new(),
            created_at: new.now,
            started_at: None,
            finished_at: None,
            requested_by: new.identity.to_string(),
            accepted_risks: Vec::<AcceptedRisk>::new(),
            dry_run: false,
            no_op: false,
        },
        request_digest: new.request_digest,
        plan: Vec::new(),
        drain: None,
        force: false,
        cordoned_by_us: false,
        was_cordoned: false,
        rolling_back: false,
        cancel_requested: false,
        verified: false,
        stage_only: false,
    }
}

/// The plan of an admitted upgrade: each component's staged file (named by
/// the artifact's whole digest), backup and versions.
pub fn upgrade_plan(id: &OperationId, request: &UpgradeRequest, admission: &Admission) -> Vec<ComponentPlan> {
    admission
        .components
        .iter()
        .map(|admitted| {
            let artifact = &request.artifacts[admitted.artifact];
            let dir = work_dir(&admitted.config.binary);
            let name = admitted.config.name.as_str();
            ComponentPlan {
                name: admitted.config.name.clone(),
                binary: admitted.config.binary.clone(),
                staged: dir.join(format!("{name}.{}.staged", artifact.sha256.as_str())),
                backup: dir.join(format!("{name}.{id}.backup")),
                source: artifact.source.clone(),
                sha256: Some(artifact.sha256.clone()),
                signature: artifact.signature.clone(),
                from_version: admitted.from_version.clone(),
                to_version: request.target_version.clone(),
            }
        })
        .collect()
}

/// The plan of a rollback: each kept binary goes back in place.
pub fn rollback_plan(
    id: &OperationId,
    kept: &[KeptBinary],
    components: &[ComponentConfig],
    observed: &dyn Fn(&ComponentConfig) -> Option<Version>,
) -> Vec<ComponentPlan> {
    kept.iter()
        .filter_map(|kept| {
            let component = components.iter().find(|c| c.name == kept.component)?;
            Some(ComponentPlan {
                name: kept.component.clone(),
                binary: component.binary.clone(),
                staged: kept.path.clone(),
                backup: work_dir(&component.binary).join(format!("{}.{id}.backup", kept.component)),
                source: String::new(),
                sha256: Some(kept.sha256.clone()),
                signature: None,
                from_version: observed(component),
                to_version: kept.version.clone(),
            })
        })
        .collect()
}

/// Ends a record at once as Succeeded with every step Skipped: the node is
/// already at the target.
pub fn finish_as_no_op(record: &mut OperationRecord, now: DateTime<Utc>) {
    let target = record.operation.target_version.clone().map(|v| v.to_string()).unwrap_or_default();
    record.operation.no_op = true;
    record.operation.phase = OperationPhase::Succeeded;
    record.operation.started_at = Some(now);
    record.operation.finished_at = Some(now);
    for step in &mut record.operation.steps {
        step.status = StepStatus::Skipped;
        step.started_at = Some(now);
        step.finished_at = Some(now);
        step.message = format!("already at {target}: nothing to do");
    }
}
