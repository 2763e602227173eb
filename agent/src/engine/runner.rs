//! Runs one operation: asks [`decide::next_action`] what comes next and does
//! it, until the operation ends. Each step is saved as Running before it starts
//! and with its outcome after (one write carries a step's outcome and the next
//! step's start); it is bounded by its time limit, interruptible
//! by a cancel, and a step that panics fails like any other step (rolled back
//! when at or after Swap), so a defect never leaves an operation Running.
//!
//! How an operation ends (abort, rollback, success) is in [`super::ending`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::watch;
use upkeep_common::api::{StepName, StepStatus};
use upkeep_common::ids::OperationId;

use crate::config::StepTimeouts;
use crate::engine::Engine;
use crate::engine::crash::crash_point;
use crate::engine::decide::{self, Action};
use crate::engine::ending;
use crate::engine::record::OperationRecord;
use crate::engine::steps;
use crate::engine::transition::{self, StepOutcome};

/// Extra time the runner allows PostCheck beyond its own polling deadline.
const POSTCHECK_MARGIN: Duration = Duration::from_secs(5);
/// Extra time the runner allows Drain beyond the drain's own timeout, so that
/// the drain's `on_timeout` action can act before the runner cuts it short.
const DRAIN_MARGIN: Duration = Duration::from_secs(30);

/// Runs operation `id` to its end; safe to call again for an interrupted one.
pub async fn run(engine: Arc<Engine>, id: OperationId, mut cancel: watch::Receiver<bool>) {
    // The step the previous step's last save already marked Running.
    let mut started = None;
    loop {
        let Some(record) = engine.record(&id) else { return };
        match decide::next_action(&record) {
            Action::Nothing => return,
            Action::RunStep(step) => {
                let saved_as_running = started == Some(step);
                started = run_step(&engine, &id, record, step, saved_as_running, &mut cancel).await;
            }
            Action::SkipRest(message) => {
                started = None;
                save(&engine, &id, |r| transition::skip_rest(r, message, Utc::now()));
            }
            Action::Abort(phase) => return ending::abort(&engine, &id, phase).await,
            Action::RollBack { degrade } => {
                return ending::roll_back(&engine, &id, transition::failure_reason(&record), degrade).await;
            }
            Action::Finish => return ending::finish(&engine, &id).await,
        }
    }
}

/// Saves a change; a storage failure is logged and the change kept in memory,
/// so the operation still reaches its end (and resumes from disk after a restart).
pub(super) fn save(engine: &Engine, id: &OperationId, change: impl FnOnce(&mut OperationRecord)) {
    if let Err(error) = engine.update(id, change) {
        tracing::error!(operation = %id, %error, "operation state could not be saved");
    }
}

/// How long `step` of `record` may take: the configured limit, for Drain
/// the request's own drain timeout when it has one, and for Swap also the
/// PostCheck time of each static pod whose new container it waits for. Saturates instead of
/// overflowing (request numbers are bounded at admission anyway).
pub fn step_limit(timeouts: &StepTimeouts, record: &OperationRecord, step: StepName) -> Duration {
    match step {
        StepName::PreCheck => timeouts.precheck,
        StepName::Stage => timeouts.stage,
        StepName::Cordon | StepName::Uncordon => timeouts.cordon,
        StepName::Drain => {
            let requested = record.drain.as_ref().and_then(|d| d.timeout_seconds).map(Duration::from_secs);
            requested.unwrap_or(timeouts.drain).saturating_add(DRAIN_MARGIN)
        }
        StepName::Swap => {
            let static_pods = record.plan.iter().filter(|plan| plan.static_pod.is_some()).count();
            let waits = timeouts.postcheck.saturating_add(POSTCHECK_MARGIN).saturating_mul(static_pods as u32);
            timeouts.swap.saturating_add(waits)
        }
        StepName::Restart => timeouts.restart,
        StepName::PostCheck => timeouts.postcheck.saturating_add(POSTCHECK_MARGIN),
    }
}

/// Runs `step` (saved as Running first, unless `saved_as_running`) and saves
/// its outcome. When the operation goes on with another step, that step is
/// marked Running in the same save, so each step costs one write, not two;
/// returns that step.
async fn run_step(
    engine: &Engine,
    id: &OperationId,
    record: OperationRecord,
    step: StepName,
    saved_as_running: bool,
    cancel: &mut watch::Receiver<bool>,
) -> Option<StepName> {
    if !saved_as_running {
        save(engine, id, |r| transition::start_step(r, step, Utc::now()));
    }
    crash_point(&format!("before:{step:?}"));
    let limit = step_limit(&engine.config.timeouts, &record, step);
    let clock = Instant::now();
    let mut working = record;
    let outcome = if *cancel.borrow() {
        StepOutcome::Cancelled
    } else {
        let guarded = AssertUnwindSafe(steps::execute(engine, &mut working, step)).catch_unwind();
        tokio::select! {
            result = tokio::time::timeout(limit, guarded) => match result {
                Err(_) => StepOutcome::TimedOut(limit),
                Ok(Err(panic)) => StepOutcome::Panicked(panic_message(panic.as_ref())),
                Ok(Ok(Err(failure))) => StepOutcome::Failed(failure),
                Ok(Ok(Ok(done))) => StepOutcome::Done(done),
            },
            _ = cancelled(cancel) => StepOutcome::Cancelled,
        }
    };
    engine.observe_step(step, clock.elapsed().as_secs_f64());
    if let StepOutcome::Panicked(what) = &outcome {
        tracing::error!(operation = %id, ?step, panic = %what, "a step stopped on a defect; the operation fails");
    }
    let finished = matches!(&outcome, StepOutcome::Done(_));
    let success = matches!(&outcome, StepOutcome::Done(done) if done.status == StepStatus::Success);
    let mut next = None;
    save(engine, id, |r| {
        merge_progress(r, &working);
        let now = Utc::now();
        transition::record_outcome(r, step, &outcome, now);
        next = start_next_step(r, now);
    });
    match step {
        StepName::Cordon if success => ending::set_cordoned(engine, true),
        StepName::Uncordon if success => ending::set_cordoned(engine, false),
        _ => {}
    }
    if finished {
        crash_point(&format!("after:{step:?}"));
    }
    next
}

/// Marks the step that comes next Running, when what comes next is a step.
fn start_next_step(record: &mut OperationRecord, now: chrono::DateTime<Utc>) -> Option<StepName> {
    let Action::RunStep(next) = decide::next_action(record) else { return None };
    transition::start_step(record, next, now);
    Some(next)
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

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> StepTimeouts {
        crate::config::sample_config(&["kubelet"]).timeouts
    }

    #[test]
    fn the_requests_drain_timeout_bounds_the_drain_step() {
        let mut record = crate::engine::transition::tests_support::record();
        let configured = step_limit(&timeouts(), &record, StepName::Drain);
        assert_eq!(configured, timeouts().drain + DRAIN_MARGIN);
        record.drain = Some(upkeep_common::api::DrainOptions { timeout_seconds: Some(7200), ..Default::default() });
        assert_eq!(step_limit(&timeouts(), &record, StepName::Drain), Duration::from_secs(7200) + DRAIN_MARGIN);
        record.drain = Some(upkeep_common::api::DrainOptions { timeout_seconds: Some(u64::MAX), ..Default::default() });
        assert_eq!(step_limit(&timeouts(), &record, StepName::Drain), Duration::MAX, "saturates, never panics");
    }

    #[test]
    fn panic_payloads_are_read() {
        let payload: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        assert_eq!(panic_message(payload.as_ref()), "index out of bounds");
        let payload: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(payload.as_ref()), "owned");
        let payload: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(payload.as_ref()), "a panic without a message");
    }
}
