//! The pure changes to an operation's record as it runs: a step starts, a
//! step ends with an outcome at a time, the steps not run are skipped, a
//! defect ends the operation. [`super::decide`] reads the result.

use std::time::Duration;

use chrono::{DateTime, Utc};
use upkeep_common::api::{OperationPhase, StepName, StepStatus};
use upkeep_common::{ErrorCode, ErrorDetail, ErrorObject};

use crate::engine::record::OperationRecord;
use crate::engine::steps::{StepDone, StepFailure};

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// It finished (Success or Skipped).
    Done(StepDone),
    /// It failed.
    Failed(StepFailure),
    /// It did not finish within its time limit.
    TimedOut(Duration),
    /// A cancel interrupted it.
    Cancelled,
    /// It panicked: a defect, failed like any other step so the node takes new work.
    Panicked(String),
}

/// Marks `step` Running (and the operation Running) at `now`.
pub fn start_step(record: &mut OperationRecord, step: StepName, now: DateTime<Utc>) {
    record.operation.phase = OperationPhase::Running;
    record.operation.started_at.get_or_insert(now);
    if let Some(saved) = record.step_mut(step) {
        saved.status = StepStatus::Running;
        saved.started_at = Some(now);
        saved.finished_at = None;
        saved.message.clear();
    }
}

/// Records how `step` ended at `now`: its status and message, and for a
/// failure the operation's error.
pub fn record_outcome(record: &mut OperationRecord, step: StepName, outcome: &StepOutcome, now: DateTime<Utc>) {
    let (status, message, error) = match outcome {
        StepOutcome::Done(done) => (done.status, done.message.clone(), None),
        StepOutcome::Cancelled => (StepStatus::Failed, "cancelled".to_owned(), None),
        StepOutcome::Failed(failure) => (StepStatus::Failed, failure.message.clone(), Some(step_error(step, failure))),
        StepOutcome::TimedOut(limit) => {
            let failure = StepFailure::new(
                ErrorCode::DependencyUnavailable,
                "step_timeout",
                format!("{step:?} did not finish within {}s", limit.as_secs()),
            );
            (StepStatus::Failed, failure.message.clone(), Some(step_error(step, &failure)))
        }
        StepOutcome::Panicked(what) => {
            let failure =
                StepFailure::new(ErrorCode::Internal, "step_panicked", format!("{step:?} stopped on a defect: {what}"));
            (StepStatus::Failed, failure.message.clone(), Some(step_error(step, &failure)))
        }
    };
    if let Some(saved) = record.step_mut(step) {
        saved.status = status;
        saved.finished_at = Some(now);
        saved.message = message;
    }
    record.operation.errors.extend(error);
}

/// The message of the step that failed, for a rollback's reason.
pub fn failure_reason(record: &OperationRecord) -> String {
    if record.cancel_requested {
        return "cancelled after the swap".to_owned();
    }
    record
        .operation
        .steps
        .iter()
        .find(|step| step.status == StepStatus::Failed)
        .map(|step| step.message.clone())
        .unwrap_or_else(|| "resuming an interrupted rollback".to_owned())
}

/// Marks every step not run as Skipped with `message`.
pub fn skip_rest(record: &mut OperationRecord, message: &str, now: DateTime<Utc>) {
    for step in record.operation.steps.iter_mut().filter(|s| matches!(s.status, StepStatus::Init | StepStatus::Running))
    {
        step.status = StepStatus::Skipped;
        step.finished_at = Some(now);
        step.message = message.to_owned();
    }
}

/// The operation error for a failed step.
pub fn step_error(step: StepName, failure: &StepFailure) -> ErrorObject {
    ErrorObject {
        code: failure.code,
        message: format!("{step:?} failed: {}", failure.message),
        details: vec![ErrorDetail::new(format!("{step:?}"), failure.detail, failure.message.clone())],
    }
}

/// Ends an operation whose runner stopped on a defect outside a step: it ends
/// Failed with the reason, so the node takes new work. Returns whether
/// binaries may have changed (the swap had started), which leaves the node
/// Degraded.
pub fn end_after_defect(record: &mut OperationRecord, what: &str, now: DateTime<Utc>) -> bool {
    let swapped = record.swap_started();
    skip_rest(record, "not run: the operation stopped on a defect", now);
    record.operation.errors.push(ErrorObject {
        code: ErrorCode::Internal,
        message: format!("the operation stopped on a defect: {what}"),
        details: vec![ErrorDetail::new("operation", "runner_panicked", what.to_owned())],
    });
    record.rolling_back = false;
    record.operation.phase = OperationPhase::Failed;
    record.operation.finished_at = Some(now);
    swapped
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! A plain upgrade record for the engine's unit tests.
    use super::*;
    use crate::engine::build::{NewRecord, new_record};
    use upkeep_common::Identity;
    use upkeep_common::api::OperationKind;

    /// A Pending upgrade with no components.
    pub fn record() -> OperationRecord {
        new_record(NewRecord {
            id: "op-1".parse().expect("valid"),
            kind: OperationKind::Upgrade,
            identity: &Identity { common_name: "test".into(), role: None, cluster_roles: Default::default() },
            token: None,
            request_digest: String::new(),
            from_version: None,
            target_version: None,
            now: DateTime::<Utc>::UNIX_EPOCH,
        })
    }
}
