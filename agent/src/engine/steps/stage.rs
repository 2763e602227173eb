//! Stage: each artifact fetched beside its binary (or found already staged by
//! its whole digest), its sha256 and signature checked; first, staged files no
//! running operation needs are removed (see [`crate::host::staging`]).

use std::path::PathBuf;
use std::time::SystemTime;

use ed25519_dalek::{Signature, VerifyingKey};
use upkeep_common::ErrorCode;
use upkeep_common::api::OperationKind;

use super::{StepDone, StepFailure, StepResult, io_failure, source_failure};
use crate::engine::Engine;
use crate::engine::admission::decode_signature;
use crate::engine::crash::crash_point;
use crate::engine::record::OperationRecord;
use crate::host::staging::{KeepPolicy, to_remove};

pub(super) async fn stage(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let keys = &engine.config.artifacts.trusted_keys;
    // `verified` means a trusted signature was checked for every artifact, not only its sha256.
    let mut signatures_checked = !record.plan.is_empty();
    let mut messages = Vec::new();
    let pruned = prune_staging(engine, record).await;
    if pruned > 0 {
        messages.push(format!("{pruned} staged file(s) no operation needs removed"));
    }
    for (index, plan) in record.plan.clone().into_iter().enumerate() {
        if plan.static_pod.is_some() && record.operation.kind != OperationKind::Rollback {
            let (digest, message) = super::static_pods::stage(engine, &plan).await?;
            record.plan[index].sha256 = Some(digest);
            messages.push(message);
            signatures_checked = false;
            crash_point(&format!("stage:{}", plan.name));
            continue;
        }
        let expected = plan.sha256.clone();
        let present = engine.host.files.digest(&plan.staged).await.map_err(io_failure("stage_failed"))?;
        let digest = if present.is_some() && present == expected {
            messages.push(format!("{}: already staged", plan.name));
            present
        } else if record.operation.kind == OperationKind::Rollback {
            return Err(StepFailure::new(
                ErrorCode::Conflict,
                "checksum_mismatch",
                format!("{}: the kept binary {} is missing or changed", plan.name, plan.staged.display()),
            ));
        } else {
            let staged = engine
                .host
                .files
                .stage(&plan.source, &plan.staged, engine.config.artifacts.max_bytes)
                .await
                .map_err(source_failure(plan.name.as_str(), "fetch_failed"))?;
            messages.push(format!("{}: staged {} bytes", plan.name, staged.size));
            Some(staged.sha256)
        };
        if digest != expected {
            let _ = engine.host.files.remove(&plan.staged).await;
            return Err(StepFailure::new(
                ErrorCode::ValidationFailed,
                "checksum_mismatch",
                format!(
                    "{}: sha256 is {}, expected {}",
                    plan.name,
                    digest.map(|d| d.to_string()).unwrap_or_default(),
                    expected.map(|d| d.to_string()).unwrap_or_default()
                ),
            ));
        }
        match (&plan.signature, &digest) {
            (Some(_), Some(_)) if keys.is_empty() => {
                messages.push(format!("{}: signature not checked (no trusted keys configured)", plan.name));
                signatures_checked = false;
            }
            (Some(signature), Some(digest)) if !signature_valid(keys, signature, &digest.to_bytes()) => {
                let _ = engine.host.files.remove(&plan.staged).await;
                return Err(StepFailure::new(
                    ErrorCode::ValidationFailed,
                    "signature_invalid",
                    format!("{}: the signature does not verify with any trusted key", plan.name),
                ));
            }
            (Some(_), Some(_)) => messages.push(format!("{}: signature verified", plan.name)),
            _ => signatures_checked = false,
        }
        crash_point(&format!("stage:{}", plan.name));
    }
    record.verified = record.operation.kind != OperationKind::Rollback && signatures_checked;
    Ok(StepDone::success(messages.join("; ")))
}

fn signature_valid(keys: &[[u8; 32]], signature: &str, digest: &[u8; 32]) -> bool {
    let Some(bytes) = decode_signature(signature) else { return false };
    let signature = Signature::from_bytes(&bytes);
    keys.iter()
        .filter_map(|key| VerifyingKey::from_bytes(key).ok())
        .any(|key| key.verify_strict(digest, &signature).is_ok())
}

/// Removes what [`to_remove`] names in the staging directories of the plan;
/// returns how many files went.
async fn prune_staging(engine: &Engine, record: &OperationRecord) -> usize {
    let artifacts = &engine.config.artifacts;
    let policy = KeepPolicy { keep: artifacts.keep_prestaged, max_age: artifacts.prestaged_max_age };
    let needed: Vec<PathBuf> = record.plan.iter().map(|plan| plan.staged.clone()).collect();
    let mut dirs: Vec<PathBuf> = record.plan.iter().map(|plan| plan.work_dir()).collect();
    dirs.sort();
    dirs.dedup();
    let mut removed = 0;
    for dir in dirs {
        let entries = engine.host.files.list(&dir).await;
        for path in to_remove(&entries, &needed, policy, SystemTime::now()) {
            match engine.host.files.remove(&path).await {
                Ok(()) => removed += 1,
                Err(error) => tracing::warn!(%error, "a staged file no operation needs could not be removed"),
            }
        }
    }
    removed
}
