//! The engine's decision as a pure function: what an operation does next, read
//! from its saved record alone ([`super::transition`] makes the record's changes).
//! The runner ([`super::runner`]) does the I/O around them.
//!
//! The same decision serves a running operation and one a kill interrupted: the
//! record says where the operation stands ([`situation`]), and [`RECOVERY`]
//! maps each situation to an action. That table is the whole recovery policy;
//! the tests below check [`next_action`] against every row of it.

use upkeep_common::api::{OperationPhase, StepName, StepStatus};

use crate::engine::record::OperationRecord;

/// Where an operation stands, as far as its next action is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    /// Succeeded, Failed, Cancelled or RolledBack.
    Ended,
    /// A rollback of the swap was under way.
    RollingBack,
    /// A cancel was asked before any binary changed.
    CancelledBeforeSwap,
    /// A cancel was asked after the swap started.
    CancelledAfterSwap,
    /// A step failed before any binary changed.
    FailedBeforeSwap,
    /// A step failed at or after the swap.
    FailedAfterSwap,
    /// A dry run whose PreCheck finished.
    DryRunChecked,
    /// A stage-only operation whose Stage finished.
    Staged,
    /// A step is still to run (or was running when the agent stopped).
    StepPending,
    /// Every step finished.
    StepsDone,
}

/// What the runner does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the operation has ended.
    Nothing,
    /// Run this step (again, if a kill interrupted it: every step is idempotent).
    RunStep(StepName),
    /// Mark the steps not run as Skipped with this message, then decide again.
    SkipRest(&'static str),
    /// End without touching binaries: remove staged files, uncordon what the
    /// operation cordoned, and end in this phase.
    Abort(OperationPhase),
    /// Put every backup back, restart and verify; `degrade` marks the node
    /// Degraded afterwards (a failure does, a cancel does not).
    RollBack {
        /// Whether the node is left Degraded with the reason.
        degrade: bool,
    },
    /// Record the result (history, kept binaries) and end Succeeded.
    Finish,
}

/// The kind of action a situation leads to (the step, where there is one, comes from the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// [`Action::Nothing`].
    Nothing,
    /// [`Action::RunStep`] with the first step not finished.
    RunNextStep,
    /// [`Action::SkipRest`].
    SkipRest,
    /// [`Action::Abort`] ending Cancelled.
    AbortCancelled,
    /// [`Action::Abort`] ending Failed.
    AbortFailed,
    /// [`Action::RollBack`] leaving the node Degraded.
    RollBackDegraded,
    /// [`Action::RollBack`] leaving the node as it was (a cancel).
    RollBackQuietly,
    /// [`Action::Finish`].
    Finish,
}

/// One row of the recovery policy.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Where the operation stands.
    pub situation: Situation,
    /// What the runner does.
    pub action: ActionKind,
    /// Why, for a person.
    pub why: &'static str,
}

/// The recovery policy: for each situation a saved record can show (at start
/// after a kill, or between two steps), the action that follows. Binaries are
/// only ever replaced by rename, so each is whole; resuming or rolling back
/// brings every component of a multi-component swap to the same side.
pub const RECOVERY: [Rule; 10] = [
    Rule { situation: Situation::Ended, action: ActionKind::Nothing, why: "an ended operation stays as it ended" },
    Rule {
        situation: Situation::RollingBack,
        action: ActionKind::RollBackDegraded,
        why: "finish the rollback: restore every backup, restart, verify the old versions",
    },
    Rule {
        situation: Situation::CancelledBeforeSwap,
        action: ActionKind::AbortCancelled,
        why: "binaries were never touched: remove staged files, uncordon if upkeep cordoned",
    },
    Rule {
        situation: Situation::CancelledAfterSwap,
        action: ActionKind::RollBackQuietly,
        why: "a cancel after the swap puts the old binaries back",
    },
    Rule {
        situation: Situation::FailedBeforeSwap,
        action: ActionKind::AbortFailed,
        why: "binaries were never touched: remove staged files, uncordon if upkeep cordoned",
    },
    Rule {
        situation: Situation::FailedAfterSwap,
        action: ActionKind::RollBackDegraded,
        why: "a failure at or after the swap rolls back and leaves the node Degraded with the reason",
    },
    Rule { situation: Situation::DryRunChecked, action: ActionKind::SkipRest, why: "a dry run stops after PreCheck" },
    Rule {
        situation: Situation::Staged,
        action: ActionKind::SkipRest,
        why: "a stage-only operation stops after Stage; the swap comes with a later upgrade",
    },
    Rule {
        situation: Situation::StepPending,
        action: ActionKind::RunNextStep,
        why: "run the first step not finished; a step a kill interrupted runs again (steps are idempotent)",
    },
    Rule { situation: Situation::StepsDone, action: ActionKind::Finish, why: "every step finished: record the result" },
];

/// Reads where `record` stands. Earlier checks win: an ended operation, then
/// a rollback under way, then a cancel, then a failed step.
pub fn situation(record: &OperationRecord) -> Situation {
    let swapped = record.swap_started();
    let failed = record.operation.steps.iter().any(|step| step.status == StepStatus::Failed);
    let next = next_step(record);
    if record.operation.phase.is_terminal() {
        Situation::Ended
    } else if record.rolling_back {
        Situation::RollingBack
    } else if record.cancel_requested {
        if swapped { Situation::CancelledAfterSwap } else { Situation::CancelledBeforeSwap }
    } else if failed {
        if swapped { Situation::FailedAfterSwap } else { Situation::FailedBeforeSwap }
    } else if record.operation.dry_run && next.is_some_and(|step| step > StepName::PreCheck) {
        Situation::DryRunChecked
    } else if record.stage_only && next.is_some_and(|step| step > StepName::Stage) {
        Situation::Staged
    } else if next.is_some() {
        Situation::StepPending
    } else {
        Situation::StepsDone
    }
}

/// The first step that has not finished.
pub fn next_step(record: &OperationRecord) -> Option<StepName> {
    record
        .operation
        .steps
        .iter()
        .find(|step| matches!(step.status, StepStatus::Init | StepStatus::Running))
        .map(|step| step.name)
}

/// What the runner does next for `record`, by [`RECOVERY`].
pub fn next_action(record: &OperationRecord) -> Action {
    let situation = situation(record);
    let rule = RECOVERY.iter().find(|rule| rule.situation == situation);
    match rule.map(|rule| rule.action) {
        None | Some(ActionKind::Nothing) => Action::Nothing,
        Some(ActionKind::RunNextStep) => next_step(record).map_or(Action::Finish, Action::RunStep),
        Some(ActionKind::SkipRest) if record.operation.dry_run => Action::SkipRest("dry run: not run"),
        Some(ActionKind::SkipRest) => Action::SkipRest("staged only: the swap comes with a later upgrade"),
        Some(ActionKind::AbortCancelled) => Action::Abort(OperationPhase::Cancelled),
        Some(ActionKind::AbortFailed) => Action::Abort(OperationPhase::Failed),
        Some(ActionKind::RollBackDegraded) => Action::RollBack { degrade: true },
        Some(ActionKind::RollBackQuietly) => Action::RollBack { degrade: false },
        Some(ActionKind::Finish) => Action::Finish,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use upkeep_common::ErrorCode;

    use super::*;
    use crate::engine::steps::StepFailure;
    use crate::engine::transition::tests_support::record;
    use crate::engine::transition::{
        StepOutcome, end_after_defect, failure_reason, record_outcome, skip_rest, start_step,
    };

    fn done_through(mut record: OperationRecord, last: StepName) -> OperationRecord {
        for step in record.operation.steps.iter_mut().filter(|s| s.name <= last) {
            step.status = StepStatus::Success;
        }
        record.operation.phase = OperationPhase::Running;
        record
    }

    fn failed_at(record: OperationRecord, step: StepName) -> OperationRecord {
        let mut record = done_through(record, step);
        if let Some(saved) = record.step_mut(step) {
            saved.status = StepStatus::Failed;
        }
        record
    }

    /// A record written by hand for each situation, independent of [`situation`].
    fn example(situation: Situation) -> OperationRecord {
        match situation {
            Situation::Ended => {
                let mut record = done_through(record(), StepName::Uncordon);
                record.operation.phase = OperationPhase::Succeeded;
                record
            }
            Situation::RollingBack => {
                let mut record = failed_at(record(), StepName::PostCheck);
                record.rolling_back = true;
                record
            }
            Situation::CancelledBeforeSwap => {
                let mut record = done_through(record(), StepName::Drain);
                record.cancel_requested = true;
                record
            }
            Situation::CancelledAfterSwap => {
                let mut record = done_through(record(), StepName::Swap);
                record.cancel_requested = true;
                record
            }
            Situation::FailedBeforeSwap => failed_at(record(), StepName::Stage),
            Situation::FailedAfterSwap => failed_at(record(), StepName::Restart),
            Situation::DryRunChecked => {
                let mut record = done_through(record(), StepName::PreCheck);
                record.operation.dry_run = true;
                record
            }
            Situation::Staged => {
                let mut record = done_through(record(), StepName::Stage);
                record.stage_only = true;
                record
            }
            Situation::StepPending => {
                let mut record = done_through(record(), StepName::Cordon);
                if let Some(step) = record.step_mut(StepName::Drain) {
                    step.status = StepStatus::Running;
                }
                record
            }
            Situation::StepsDone => done_through(record(), StepName::Uncordon),
        }
    }

    fn expected(kind: ActionKind, record: &OperationRecord) -> Action {
        match kind {
            ActionKind::Nothing => Action::Nothing,
            ActionKind::RunNextStep => Action::RunStep(StepName::Drain),
            ActionKind::SkipRest if record.operation.dry_run => Action::SkipRest("dry run: not run"),
            ActionKind::SkipRest => Action::SkipRest("staged only: the swap comes with a later upgrade"),
            ActionKind::AbortCancelled => Action::Abort(OperationPhase::Cancelled),
            ActionKind::AbortFailed => Action::Abort(OperationPhase::Failed),
            ActionKind::RollBackDegraded => Action::RollBack { degrade: true },
            ActionKind::RollBackQuietly => Action::RollBack { degrade: false },
            ActionKind::Finish => Action::Finish,
        }
    }

    #[test]
    fn every_row_of_the_recovery_table_holds() {
        for rule in RECOVERY {
            let record = example(rule.situation);
            assert_eq!(situation(&record), rule.situation, "{:?} is read back", rule.situation);
            assert_eq!(next_action(&record), expected(rule.action, &record), "{:?}: {}", rule.situation, rule.why);
        }
    }

    #[test]
    fn the_table_covers_each_situation_once() {
        for rule in RECOVERY {
            let rows = RECOVERY.iter().filter(|other| other.situation == rule.situation).count();
            assert_eq!(rows, 1, "{:?}", rule.situation);
        }
    }

    #[test]
    fn a_fresh_upgrade_starts_with_precheck_and_a_dry_run_skips_the_rest() {
        assert_eq!(next_action(&record()), Action::RunStep(StepName::PreCheck));
        let mut dry = record();
        dry.operation.dry_run = true;
        assert_eq!(next_action(&dry), Action::RunStep(StepName::PreCheck));
        let mut checked = done_through(dry, StepName::PreCheck);
        assert!(matches!(next_action(&checked), Action::SkipRest(_)));
        skip_rest(&mut checked, "dry run: not run", DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(next_action(&checked), Action::Finish);
    }

    #[test]
    fn outcomes_decide_between_abort_and_rollback() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut before = done_through(record(), StepName::PreCheck);
        start_step(&mut before, StepName::Stage, now);
        let failure = StepFailure::new(ErrorCode::ValidationFailed, "checksum_mismatch", "bad digest");
        record_outcome(&mut before, StepName::Stage, &StepOutcome::Failed(failure), now);
        assert_eq!(next_action(&before), Action::Abort(OperationPhase::Failed));
        assert_eq!(before.operation.errors[0].details[0].code, "checksum_mismatch");

        let mut after = done_through(record(), StepName::Swap);
        start_step(&mut after, StepName::Restart, now);
        record_outcome(&mut after, StepName::Restart, &StepOutcome::Panicked("index out of bounds".into()), now);
        assert_eq!(next_action(&after), Action::RollBack { degrade: true });
        assert_eq!(after.operation.errors[0].code, ErrorCode::Internal);
        assert_eq!(after.operation.errors[0].details[0].code, "step_panicked");

        let mut cancelled = done_through(record(), StepName::Swap);
        start_step(&mut cancelled, StepName::Restart, now);
        cancelled.cancel_requested = true;
        record_outcome(&mut cancelled, StepName::Restart, &StepOutcome::Cancelled, now);
        assert_eq!(next_action(&cancelled), Action::RollBack { degrade: false });
        assert_eq!(failure_reason(&cancelled), "cancelled after the swap");

        let mut slow = done_through(record(), StepName::Cordon);
        start_step(&mut slow, StepName::Drain, now);
        record_outcome(&mut slow, StepName::Drain, &StepOutcome::TimedOut(Duration::from_secs(90)), now);
        assert_eq!(next_action(&slow), Action::Abort(OperationPhase::Failed));
        assert_eq!(failure_reason(&slow), "Drain did not finish within 90s");
    }

    #[test]
    fn a_defect_outside_a_step_ends_the_operation() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut rolling = example(Situation::RollingBack);
        assert!(end_after_defect(&mut rolling, "boom", now), "the swap had started");
        assert_eq!(rolling.operation.phase, OperationPhase::Failed);
        assert_eq!(next_action(&rolling), Action::Nothing);
        let mut early = example(Situation::StepPending);
        assert!(!end_after_defect(&mut early, "boom", now));
        assert!(early.operation.steps.iter().all(|s| s.status != StepStatus::Running));
    }
}
