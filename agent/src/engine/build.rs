//! Building the record of a new operation from its request: ids, steps, the
//! per-component plan and the no-op case. Pure but for the id's randomness and
//! the clock, both passed in by the caller where it matters.

use chrono::{DateTime, Utc};
use rand::RngExt;
use upkeep_common::api::{AcceptedRisk, Operation, OperationKind, OperationPhase, StepStatus, UpgradeRequest};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_common::{Identity, Version};

use crate::config::ComponentConfig;
use crate::engine::admission::{Admission, Requested};
use crate::engine::record::{ComponentPlan, KeptBinary, OperationRecord, StaticPodPlan, initial_steps};

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
/// the artifact's or image's whole digest), backup and versions. Static pods
/// come first, etcd, kube-apiserver, kube-controller-manager, kube-scheduler in
/// that order (each is checked before the next is swapped), then the binaries.
pub fn upgrade_plan(id: &OperationId, request: &UpgradeRequest, admission: &Admission) -> Vec<ComponentPlan> {
    let mut plan: Vec<ComponentPlan> = admission
        .components
        .iter()
        .map(|admitted| {
            let dir = admitted.config.work_dir();
            let name = admitted.config.name.as_str();
            let from_version = admitted.from_version.clone();
            let to_version = admitted.to_version.clone();
            let backup = dir.join(format!("{name}.{id}.backup"));
            match admitted.requested {
                Requested::Artifact(index) => {
                    let artifact = &request.artifacts[index];
                    ComponentPlan {
                        name: admitted.config.name.clone(),
                        path: admitted.config.path.clone(),
                        staged: dir.join(format!("{name}.{}.staged", artifact.sha256.as_str())),
                        backup,
                        source: artifact.source.clone(),
                        sha256: Some(artifact.sha256.clone()),
                        signature: artifact.signature.clone(),
                        from_version,
                        to_version,
                        static_pod: None,
                    }
                }
                Requested::Image(index) => {
                    let image = &request.images[index];
                    let container = admitted.config.static_pod().map(|pod| pod.container.clone()).unwrap_or_default();
                    ComponentPlan {
                        name: admitted.config.name.clone(),
                        path: admitted.config.path.clone(),
                        staged: dir.join(format!("{name}.{}.staged", image.image.digest().as_str())),
                        backup,
                        source: image.image.to_string(),
                        sha256: None,
                        signature: None,
                        from_version,
                        to_version,
                        static_pod: Some(StaticPodPlan {
                            container,
                            image: image.image.to_string(),
                            remove_flags: image.remove_flags.clone(),
                        }),
                    }
                }
            }
        })
        .collect();
    plan.sort_by_key(swap_rank);
    plan
}

/// Where a component comes in the swap order: the control plane's static pods
/// in the order their skew rules need, other static pods, then binaries.
fn swap_rank(component: &ComponentPlan) -> u8 {
    const CONTROL_PLANE: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];
    match component.static_pod {
        None => 5,
        Some(_) => CONTROL_PLANE.iter().position(|name| *name == component.name.as_str()).map_or(4, |at| at as u8),
    }
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
                path: component.path.clone(),
                staged: kept.path.clone(),
                backup: component.work_dir().join(format!("{}.{id}.backup", kept.component)),
                source: String::new(),
                sha256: Some(kept.sha256.clone()),
                signature: None,
                from_version: observed(component),
                to_version: kept.version.clone(),
                static_pod: component.static_pod().map(|pod| StaticPodPlan {
                    container: pod.container.clone(),
                    image: String::new(),
                    remove_flags: Vec::new(),
                }),
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
