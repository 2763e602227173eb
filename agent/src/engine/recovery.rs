//! What the agent does on start with operations a kill interrupted.
//!
//! Every step is idempotent and saved as Running before it acts, so resuming
//! is the same decision as between two steps: [`super::decide::next_action`]
//! reads the saved record and [`super::decide::RECOVERY`] (the recovery table,
//! as data) says what follows: resume at the first step not finished, finish
//! a rollback under way, abort a cancel before the swap, roll back one after
//! it. A kill can land between two renames of a multi-component Swap;
//! resuming or rolling back then brings every component to the same side, so
//! all are swapped or none. Binaries are only ever replaced by `rename`, so
//! each is whole: the old bytes or the new ones.

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
