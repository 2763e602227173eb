//! What the agent does on start with operations a kill interrupted.
//!
//! Every step is idempotent and saved as Running before it acts, so the runner
//! simply resumes at the first step that is not finished:
//!
//! | saved state at start | action |
//! |---|---|
//! | Pending (accepted, no step started) | run it from PreCheck |
//! | Running, a step before Swap Running or next | resume there: a staged file whose digest matches is kept, others are fetched again; binaries were never touched |
//! | Running, Swap Running | resume Swap: a binary already carrying the target digest is left, the rest are backed up (unless a backup exists) and renamed into place |
//! | Running, Restart or PostCheck Running or next | restart again, then verify; a failure rolls back from the kept backups |
//! | Running, Uncordon Running or next | uncordon again (only if upkeep cordoned) |
//! | rolling back (after a failed PostCheck or a cancel after Swap) | finish the rollback: restore every backup, restart, verify the old versions |
//! | cancel requested, Swap not started | abort: remove staged files, uncordon if upkeep cordoned; Cancelled |
//! | cancel requested, Swap started | roll back as above; RolledBack |
//! | Succeeded, Failed, Cancelled, RolledBack | nothing |
//!
//! A kill can land between two renames of a multi-component Swap; resuming or
//! rolling back then brings every component to the same side, so all are
//! swapped or none. Binaries are only ever replaced by `rename`, so each is
//! whole: the old bytes or the new ones.

use std::sync::Arc;

use upkeep_common::ids::OperationId;

use crate::engine::Engine;

/// Resumes every interrupted operation; returns their ids.
pub fn resume_interrupted(engine: &Arc<Engine>) -> Vec<OperationId> {
    let resumed = engine.resume_interrupted();
    for id in &resumed {
        tracing::warn!(operation = %id, "resuming an operation interrupted by a stop");
    }
    resumed
}
