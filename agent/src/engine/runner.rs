//! Runs one operation: its steps in order, each saved as Running before it starts
//! and with its outcome after, each bounded by its timeout and interruptible by
//! a cancel.
//!
//! - A failure (or cancel) before Swap leaves the binaries untouched: staged
//!   files are removed, the node is uncordoned if upkeep cordoned it, and the
//!   operation ends Failed (or Cancelled).
//! - A failure at or after Swap rolls back: every backup is put back, the
//!   components restarted and their old versions verified; the operation ends
//!   RolledBack and the node Degraded with the reason (a cancel rolls back the
//!   same way without marking the node Degraded). If the rollback itself fails
//!   the operation ends Failed and the node Degraded.
//! - Success keeps the replaced binaries for `POST /v1/rollback` and records the
//!   change in the history.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use upkeep_common::api::{HistoryEntry, HistoryState, OperationKind, OperationPhase, StepName, StepStatus};
use upkeep_common::ids::OperationId;
use upkeep_common::{ErrorCode, ErrorDetail, ErrorObject};

use crate::engine::Engine;
use crate::engine::crash::crash_point;
use crate::engine::record::{DegradedReason, KeptBinary, OperationRecord};
use crate::engine::steps::{self, StepFailure};
use crate::host::files::work_dir;

/// Extra time the runner allows PostCheck beyond its own polling deadline.
const POSTCHECK_MARGIN: Duration = Duration::from_secs(5);

/// How a run ended before its last step.
enum Stop {
    Failed(StepFailure),
    Cancelled,
}

/// Runs operation `id` to its end; safe to call again for an interrupted one.
pub async fn run(engine: std::sync::Arc<Engine>, id: OperationId, mut cancel: watch::Receiver<bool>) {
    let Some(mut record) = engine.record(&id) else { return };
    if record.operation.phase.is_terminal() {
        return;
    }
    let now = Utc::now();
    record = save(&engine, &id, |r| {
        r.operation.phase = OperationPhase::Running;
        r.operation.started_at.get_or_insert(now);
    })
    .unwrap_or(record);
    let stop = if record.rolling_back { Ok(()) } else { run_steps(&engine, &id, &mut record, &mut cancel).await };
    let record = engine.record(&id).unwrap_or(record);
    match stop.err() {
        _ if record.rolling_back => roll_back(&engine, &id, "resuming an interrupted rollback".into(), true).await,
        None => finish(&engine, &id, record).await,
        Some(stop) if record.swap_started() => {
            let (reason, degrade) = match &stop {
                Stop::Failed(failure) => (failure.message.clone(), true),
                Stop::Cancelled => ("cancelled after the swap".to_owned(), false),
            };
            roll_back(&engine, &id, reason, degrade).await;
        }
        Some(Stop::Failed(_)) => abort(&engine, &id, record, OperationPhase::Failed).await,
        Some(Stop::Cancelled) => abort(&engine, &id, record, OperationPhase::Cancelled).await,
    }
}

fn save(engine: &Engine, id: &OperationId, change: impl FnOnce(&mut OperationRecord)) -> Option<OperationRecord> {
    match engine.update(id, change) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::error!(operation = %id, %error, "operation state could not be saved");
            None
        }
    }
}

fn step_timeout(engine: &Engine, step: StepName) -> Duration {
    let timeouts = &engine.config.timeouts;
    match step {
        StepName::PreCheck => timeouts.precheck,
        StepName::Stage => timeouts.stage,
        StepName::Cordon | StepName::Uncordon => timeouts.cordon,
        StepName::Drain => timeouts.drain + Duration::from_secs(30),
        StepName::Swap => timeouts.swap,
        StepName::Restart => timeouts.restart,
        StepName::PostCheck => timeouts.postcheck + POSTCHECK_MARGIN,
    }
}

/// Saves a change, turning a storage failure into a failure of the run.
fn save_or_stop(
    engine: &Engine,
    id: &OperationId,
    change: impl FnOnce(&mut OperationRecord),
) -> Result<OperationRecord, Stop> {
    save(engine, id, change).ok_or_else(|| {
        Stop::Failed(StepFailure::new(
            ErrorCode::DependencyUnavailable,
            "state_not_saved",
            "the agent could not save its state",
        ))
    })
}

async fn run_steps(
    engine: &Engine,
    id: &OperationId,
    record: &mut OperationRecord,
    cancel: &mut watch::Receiver<bool>,
) -> Result<(), Stop> {
    loop {
        let Some(next) = record
            .operation
            .steps
            .iter()
            .find(|step| matches!(step.status, StepStatus::Init | StepStatus::Running))
            .map(|step| step.name)
        else {
            return Ok(());
        };
        if record.operation.dry_run && next != StepName::PreCheck {
            skip_rest(engine, id, record, "dry run: not run");
            return Ok(());
        }
        if record.stage_only && next > StepName::Stage {
            skip_rest(engine, id, record, "staged only: the swap comes with a later upgrade");
            return Ok(());
        }
        if *cancel.borrow() || record.cancel_requested {
            return Err(Stop::Cancelled);
        }
        let started = Utc::now();
        *record =
            save_or_stop(engine, id, |r| set_step(r, next, StepStatus::Running, Some(started), None, String::new()))?;
        crash_point(&format!("before:{next:?}"));
        let clock = Instant::now();
        let mut working = record.clone();
        let outcome = tokio::select! {
            result = tokio::time::timeout(step_timeout(engine, next), steps::execute(engine, &mut working, next)) => Some(result),
            _ = cancelled(cancel) => None,
        };
        engine.observe_step(next, clock.elapsed().as_secs_f64());
        let finished = Some(Utc::now());
        let result = match outcome {
            None => Err(Stop::Cancelled),
            Some(Err(_)) => Err(Stop::Failed(StepFailure::new(
                ErrorCode::DependencyUnavailable,
                "step_timeout",
                format!("{next:?} did not finish within {:?}", step_timeout(engine, next)),
            ))),
            Some(Ok(Err(failure))) => Err(Stop::Failed(failure)),
            Some(Ok(Ok(done))) => Ok(done),
        };
        match result {
            Ok(done) => {
                let success = done.status == StepStatus::Success;
                *record = save_or_stop(engine, id, |r| {
                    merge_progress(r, &working);
                    set_step(r, next, done.status, Some(started), finished, done.message);
                })?;
                match next {
                    StepName::Cordon if success => set_cordoned(engine, true),
                    StepName::Uncordon if success => set_cordoned(engine, false),
                    _ => {}
                }
                crash_point(&format!("after:{next:?}"));
            }
            Err(stop) => {
                let message = match &stop {
                    Stop::Failed(failure) => failure.message.clone(),
                    Stop::Cancelled => "cancelled".to_owned(),
                };
                let error = match &stop {
                    Stop::Failed(failure) => Some(step_error(next, failure)),
                    Stop::Cancelled => None,
                };
                *record = save_or_stop(engine, id, |r| {
                    merge_progress(r, &working);
                    set_step(r, next, StepStatus::Failed, Some(started), finished, message);
                    r.operation.errors.extend(error);
                })?;
                return Err(stop);
            }
        }
    }
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow() {
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Copies what a step learned into the saved record (never the cancel flag, which
/// only the API sets).
fn merge_progress(record: &mut OperationRecord, working: &OperationRecord) {
    record.cordoned_by_us = working.cordoned_by_us;
    record.was_cordoned = working.was_cordoned;
    record.verified = working.verified;
    record.operation.accepted_risks.clone_from(&working.operation.accepted_risks);
}

fn set_step(
    record: &mut OperationRecord,
    name: StepName,
    status: StepStatus,
    started: Option<chrono::DateTime<Utc>>,
    finished: Option<chrono::DateTime<Utc>>,
    message: String,
) {
    if let Some(step) = record.step_mut(name) {
        step.status = status;
        if started.is_some() {
            step.started_at = started;
        }
        step.finished_at = finished;
        if !message.is_empty() || status != StepStatus::Running {
            step.message = message;
        }
    }
}

fn step_error(step: StepName, failure: &StepFailure) -> ErrorObject {
    ErrorObject {
        code: failure.code,
        message: format!("{step:?} failed: {}", failure.message),
        details: vec![ErrorDetail::new(format!("{step:?}"), failure.detail, failure.message.clone())],
    }
}

fn skip_rest(engine: &Engine, id: &OperationId, record: &mut OperationRecord, message: &str) {
    let now = Some(Utc::now());
    if let Some(saved) = save(engine, id, |r| {
        for step in r.operation.steps.iter_mut().filter(|s| matches!(s.status, StepStatus::Init | StepStatus::Running))
        {
            step.status = StepStatus::Skipped;
            step.finished_at = now;
            step.message = message.to_owned();
        }
    }) {
        *record = saved;
    }
}

/// Ends an operation that failed or was cancelled before the swap.
async fn abort(engine: &Engine, id: &OperationId, mut record: OperationRecord, phase: OperationPhase) {
    skip_rest(engine, id, &mut record, "not run: the operation stopped earlier");
    if record.operation.kind != OperationKind::Rollback {
        for plan in &record.plan {
            let _ = engine.host.files.remove(&plan.staged).await;
        }
    }
    let uncordon_note = uncordon_if_ours(engine, &record).await;
    let now = Utc::now();
    save(engine, id, |r| {
        if let Some(note) = uncordon_note {
            r.operation.errors.push(note);
        }
        r.cordoned_by_us = false;
        r.operation.phase = phase;
        r.operation.finished_at = Some(now);
    });
    tracing::info!(operation = %id, ?phase, "operation ended before the swap; binaries untouched");
}

fn set_cordoned(engine: &Engine, cordoned: bool) {
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
async fn roll_back(engine: &Engine, id: &OperationId, reason: String, degrade: bool) {
    let Some(record) = save(engine, id, |r| r.rolling_back = true) else { return };
    let files = &engine.host.files;
    let mut restored = Vec::new();
    let mut failures = Vec::new();
    for plan in &record.plan {
        if !files.exists(&plan.backup).await {
            continue;
        }
        match files.restore(&plan.backup, &plan.binary).await {
            Ok(()) => restored.push(plan),
            Err(error) => failures.push(format!("{}: {error}", plan.name)),
        }
        crash_point(&format!("rollback:restore:{}", plan.name));
    }
    for plan in &restored {
        if let Some(component) = engine.config.components.iter().find(|c| c.name == plan.name) {
            if let Err(error) = engine.host.services.restart(component, engine.config.timeouts.restart).await {
                failures.push(format!("{}: restart after restore failed: {error}", plan.name));
            }
        }
    }
    let targets: Vec<_> = restored
        .iter()
        .filter_map(|plan| plan.from_version.clone().map(|version| (plan.name.clone(), version)))
        .collect();
    if failures.is_empty() {
        if let Err(failure) = steps::verify_versions(engine, &targets, engine.config.timeouts.postcheck).await {
            failures.push(format!("after restore: {}", failure.message));
        }
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
        node.history.push(history);
        if degraded.is_some() {
            node.degraded = degraded;
        }
    }) {
        tracing::error!(%error, "node state could not be saved");
    }
    let note = failures.join("; ");
    save(engine, id, |r| {
        skip_steps_after_failure(r, now);
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

fn skip_steps_after_failure(record: &mut OperationRecord, now: chrono::DateTime<Utc>) {
    for step in record.operation.steps.iter_mut().filter(|s| matches!(s.status, StepStatus::Init | StepStatus::Running))
    {
        step.status = StepStatus::Skipped;
        step.finished_at = Some(now);
        step.message = "not run: rolled back".to_owned();
    }
}

fn history_entry(record: &OperationRecord, state: HistoryState, now: chrono::DateTime<Utc>) -> HistoryEntry {
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
async fn finish(engine: &Engine, id: &OperationId, record: OperationRecord) {
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
            node.history.push(history);
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
        let path = work_dir(&plan.binary).join(format!("{}.previous", plan.name));
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
