//! How an operation ends, once [`super::decide`] has said which way:
//!
//! - **abort** (a failure or cancel before Swap): binaries were never touched;
//!   staged files are removed, the node is uncordoned if this operation
//!   cordoned it, and the operation ends Failed (or Cancelled).
//! - **rollback** (a failure or cancel at or after Swap): every backup is put
//!   back, the components restarted and their old versions verified; the
//!   operation ends RolledBack and the node Degraded with the reason (a cancel
//!   rolls back the same way without marking the node Degraded). If the
//!   rollback itself fails the operation ends Failed and the node Degraded.
//! - **finish** (every step done): the replaced binaries are kept for
//!   `POST /v1/rollback` and the change is recorded in the history.

use chrono::{DateTime, Utc};
use upkeep_common::api::{HistoryEntry, HistoryState, OperationKind, OperationPhase};
use upkeep_common::ids::OperationId;
use upkeep_common::{ErrorCode, ErrorDetail, ErrorObject};

use crate::engine::Engine;
use crate::engine::crash::crash_point;
use crate::engine::record::{DegradedReason, KeptBinary, OperationRecord};
use crate::engine::runner::save;
use crate::engine::steps;
use crate::engine::transition;

/// Ends an operation that failed or was cancelled before the swap.
pub async fn abort(engine: &Engine, id: &OperationId, phase: OperationPhase) {
    save(engine, id, |r| transition::skip_rest(r, "not run: the operation stopped earlier", Utc::now()));
    let Some(record) = engine.record(id) else { return };
    if record.operation.kind != OperationKind::Rollback {
        for plan in &record.plan {
            let _ = engine.host.files.remove(&plan.staged).await;
        }
    }
    let uncordon_note = uncordon_if_ours(engine, &record).await;
    save(engine, id, |r| {
        r.operation.errors.extend(uncordon_note);
        r.cordoned_by_us = false;
        r.operation.phase = phase;
        r.operation.finished_at = Some(Utc::now());
    });
    tracing::info!(operation = %id, ?phase, "operation ended before the swap; binaries untouched");
}

/// Records whether the node is cordoned, as the last cordon or uncordon left it.
pub fn set_cordoned(engine: &Engine, cordoned: bool) {
    if let Err(error) = engine.update_node(|node| node.cordoned = cordoned) {
        tracing::error!(%error, "node state could not be saved");
    }
}

async fn uncordon_if_ours(engine: &Engine, record: &OperationRecord) -> Option<ErrorObject> {
    if !record.cordoned_by_us {
        return None;
    }
    match engine.host.kubernetes.uncordon(&record.operation.id, true).await {
        Ok(()) => {
            set_cordoned(engine, false);
            None
        }
        Err(error) => Some(ErrorObject {
            code: ErrorCode::DependencyUnavailable,
            message: format!("the node stays cordoned: {error}"),
            details: vec![ErrorDetail::new("Uncordon", "uncordon_failed", error.to_string())],
        }),
    }
}

/// Puts every backup back, restarts, and verifies the old versions.
pub async fn roll_back(engine: &Engine, id: &OperationId, reason: String, degrade: bool) {
    save(engine, id, |r| r.rolling_back = true);
    let Some(record) = engine.record(id) else { return };
    let files = &engine.host.files;
    let mut restored = Vec::new();
    let mut failures = Vec::new();
    for plan in &record.plan {
        if !files.exists(&plan.backup).await {
            continue;
        }
        match files.restore(&plan.backup, &plan.path).await {
            Ok(()) => restored.push(plan),
            Err(error) => failures.push(format!("{}: {error}", plan.name)),
        }
        crash_point(&format!("rollback:restore:{}", plan.name));
    }
    for plan in &restored {
        if let Some(component) = engine.config.components.iter().find(|c| c.name == plan.name)
            && let Err(error) = engine.host.services.restart(component, engine.config.timeouts.restart).await
        {
            failures.push(format!("{}: restart after restore failed: {error}", plan.name));
        }
    }
    let targets: Vec<_> = restored
        .iter()
        .filter_map(|plan| plan.from_version.clone().map(|version| (plan.name.clone(), version)))
        .collect();
    if failures.is_empty()
        && let Err(failure) = steps::verify_versions(engine, &targets, engine.config.timeouts.postcheck).await
    {
        failures.push(format!("after restore: {}", failure.message));
    }
    engine.refresh_versions().await;
    let rolled_back = failures.is_empty();
    if rolled_back {
        for plan in &record.plan {
            let _ = files.remove(&plan.backup).await;
            if record.operation.kind != OperationKind::Rollback {
                let _ = files.remove(&plan.staged).await;
            }
        }
    }
    let uncordon_note = if rolled_back { uncordon_if_ours(engine, &record).await } else { None };
    let now = Utc::now();
    let state = if rolled_back { HistoryState::RolledBack } else { HistoryState::Partial };
    let history = history_entry(&record, state, now);
    let degraded = match (rolled_back, degrade) {
        (true, false) => None,
        (true, true) => Some(DegradedReason {
            reason: "UpgradeRolledBack".into(),
            message: format!("operation {id} was rolled back: {reason}"),
            since: now,
        }),
        (false, _) => Some(DegradedReason {
            reason: "RollbackFailed".into(),
            message: format!(
                "operation {id} could not be rolled back ({}); binaries need attention",
                failures.join("; ")
            ),
            since: now,
        }),
    };
    if let Err(error) = engine.update_node(|node| {
        node.record_history(history);
        if degraded.is_some() {
            node.degraded = degraded;
        }
    }) {
        tracing::error!(%error, "node state could not be saved");
    }
    let note = failures.join("; ");
    save(engine, id, |r| {
        transition::skip_rest(r, "not run: rolled back", now);
        r.operation.errors.extend(uncordon_note);
        if !rolled_back {
            r.operation.errors.push(ErrorObject {
                code: ErrorCode::DependencyUnavailable,
                message: format!("rollback failed: {note}"),
                details: vec![ErrorDetail::new("Swap", "rollback_failed", note.clone())],
            });
        }
        r.rolling_back = false;
        r.cordoned_by_us = r.cordoned_by_us && !rolled_back;
        r.operation.phase = if rolled_back { OperationPhase::RolledBack } else { OperationPhase::Failed };
        r.operation.finished_at = Some(now);
    });
    tracing::warn!(operation = %id, rolled_back, %reason, "operation rolled back");
}

fn history_entry(record: &OperationRecord, state: HistoryState, now: DateTime<Utc>) -> HistoryEntry {
    HistoryEntry {
        operation_id: record.operation.id.clone(),
        version: record.operation.target_version.clone().unwrap_or_else(|| upkeep_common::Version::new(0, 0, 0)),
        from_version: record.operation.from_version.clone(),
        state,
        started_at: record.operation.started_at.unwrap_or(now),
        completed_at: Some(now),
        verified: record.verified,
        accepted_risks: record.operation.accepted_risks.clone(),
    }
}

/// Ends an operation whose steps all finished.
pub async fn finish(engine: &Engine, id: &OperationId) {
    let Some(record) = engine.record(id) else { return };
    let now = Utc::now();
    let changes_versions = matches!(record.operation.kind, OperationKind::Upgrade | OperationKind::Rollback);
    if changes_versions && !record.operation.dry_run && !record.stage_only {
        keep_previous(engine, &record).await;
        let state = match record.operation.kind {
            OperationKind::Rollback => HistoryState::RolledBack,
            _ => HistoryState::Completed,
        };
        let history = history_entry(&record, state, now);
        if let Err(error) = engine.update_node(|node| {
            node.record_history(history);
            node.degraded = None;
        }) {
            tracing::error!(%error, "node state could not be saved");
        }
    }
    save(engine, id, |r| {
        r.operation.phase = OperationPhase::Succeeded;
        r.operation.finished_at = Some(now);
    });
    tracing::info!(operation = %id, kind = ?record.operation.kind, "operation succeeded");
}

/// After an upgrade: each backup becomes the kept previous binary. After a
/// rollback: the kept binaries are used up.
async fn keep_previous(engine: &Engine, record: &OperationRecord) {
    let files = &engine.host.files;
    let mut kept = Vec::new();
    for plan in &record.plan {
        if record.operation.kind == OperationKind::Rollback {
            let _ = files.remove(&plan.staged).await;
            let _ = files.remove(&plan.backup).await;
            continue;
        }
        let Some(version) = plan.from_version.clone() else { continue };
        let path = plan.work_dir().join(format!("{}.previous", plan.name));
        let Ok(Some(sha256)) = files.digest(&plan.backup).await else { continue };
        if files.rename(&plan.backup, &path).await.is_ok() {
            kept.push(KeptBinary { component: plan.name.clone(), path, version, sha256 });
        }
    }
    let is_rollback = record.operation.kind == OperationKind::Rollback;
    if let Err(error) = engine.update_node(|node| {
        if is_rollback {
            node.previous.clear();
        } else {
            node.previous.retain(|k| !kept.iter().any(|n| n.component == k.component));
            node.previous.extend(kept);
        }
    }) {
        tracing::error!(%error, "node state could not be saved");
    }
}
