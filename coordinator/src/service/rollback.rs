//! Whether an ended update may be rolled back, and the update that does it:
//! every node it patched goes back to the version recorded before it (by its
//! PreCheck), as an update of type Rollback. Allowed for a patch-level update,
//! or when only workers moved a minor; a control plane that moved a minor goes
//! back only with `force`, recorded as an accepted risk (Kubernetes does not
//! support downgrading an API server's minor). Pure.

use std::collections::{BTreeSet, HashMap};

use upkeep_common::api::NodeRole;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Version};

use crate::catalog::Catalog;
use crate::journal::Journal;
use crate::plan::NodeStatus;

use super::admission::{AdmissionInput, NewUpdate, new_update};
use super::checks::NodesBefore;
use super::config::Policy;
use super::model::{Update, UpdateType};

/// What a rollback is decided from.
pub struct RollbackInput<'a> {
    /// The update to roll back.
    pub original: &'a Update,
    /// Its rollout journal (which nodes it patched).
    pub journal: &'a Journal,
    /// What its PreCheck recorded of each node.
    pub before: &'a NodesBefore,
    /// Each node's role.
    pub roles: &'a HashMap<String, NodeRole>,
    /// The cluster's catalog.
    pub catalog: &'a Catalog,
    /// The cluster's policy.
    pub policy: &'a Policy,
    /// Whether the caller (an admin) overrides the control-plane rule.
    pub force: bool,
    /// The caller's token.
    pub request_token: Option<String>,
    /// The cluster, the caller, the new id and the time.
    pub input: AdmissionInput<'a>,
}

fn refused(code: ErrorCode, detail: &str, message: String) -> ErrorBody {
    ErrorBody::with_details(code, message.clone(), vec![ErrorDetail::new("update", detail, message)])
}

/// The rollback of `input.original`, or why there is none.
pub fn admit_rollback(input: RollbackInput<'_>) -> Result<Update, ErrorBody> {
    let original = input.original;
    if !original.status.is_final() {
        let message = format!("update {} is still {:?}; cancel it and let it end first", original.id, original.status);
        return Err(refused(ErrorCode::Conflict, "still_running", message));
    }
    if original.kind == UpdateType::Rollback {
        let message = format!("update {} is a rollback; start an upgrade instead", original.id);
        return Err(refused(ErrorCode::ValidationFailed, "is_a_rollback", message));
    }
    let patched: Vec<&str> =
        input.journal.nodes.iter().filter(|n| n.status == NodeStatus::Patched).map(|n| n.name.as_str()).collect();
    if patched.is_empty() {
        let message = format!("update {} patched no node: there is nothing to roll back", original.id);
        return Err(refused(ErrorCode::ValidationFailed, "nothing_patched", message));
    }
    let previous: BTreeSet<Option<&Version>> =
        patched.iter().map(|name| input.before.version.get(*name).and_then(Option::as_ref)).collect();
    let previous = match previous.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(version)] => (*version).clone(),
        found => {
            let shown: Vec<String> =
                found.iter().map(|v| v.map_or("unknown".to_owned(), ToString::to_string)).collect();
            let message = format!(
                "the nodes update {} patched were not on one version before it ({}): roll them back one by one",
                original.id,
                shown.join(", ")
            );
            return Err(refused(ErrorCode::ValidationFailed, "mixed_versions", message));
        }
    };
    let mut accepted_risks = Vec::new();
    let moved_minor = !previous.same_minor(&original.target_version);
    let control_plane = patched.iter().any(|name| input.roles.get(*name) == Some(&NodeRole::ControlPlane));
    if moved_minor && control_plane {
        let risk = format!(
            "ControlPlaneMinorDowngrade: the control plane goes back from {} to {}",
            original.target_version, previous
        );
        if !input.force {
            let message = format!("{risk}, which Kubernetes does not support; only force (admin) does it");
            return Err(refused(ErrorCode::VersionRefused, "control_plane_minor", message));
        }
        accepted_risks.push(risk);
    }
    let Some(release) = input.catalog.release(&previous) else {
        let message = format!("version {previous} is not in the release catalog: its artifacts are needed to go back");
        return Err(refused(ErrorCode::ValidationFailed, "version_not_in_catalog", message));
    };
    Ok(new_update(NewUpdate {
        kind: UpdateType::Rollback,
        target: release.version.clone(),
        policy: input.policy,
        force: input.force,
        dry_run: false,
        request_token: input.request_token,
        accepted_risks,
        input: input.input,
    }))
}
