//! Crash points for the durability tests: with the `crash-points` feature, a
//! point whose name equals `UPKEEP_CRASH_AT` kills the agent with SIGKILL on the
//! spot. Without the feature (every production build) they do nothing.
//!
//! Names: `before:STEP` and `after:STEP` around every step (STEP as in the
//! API, such as `Swap`), `stage:COMPONENT` after each staged artifact,
//! `swap:backup:COMPONENT` and `swap:rename:COMPONENT` inside Swap, and
//! `rollback:restore:COMPONENT` inside a rollback.

/// Kills the process here if the test asked for it.
#[cfg(feature = "crash-points")]
pub fn crash_point(name: &str) {
    if std::env::var("UPKEEP_CRASH_AT").is_ok_and(|at| at == name) {
        tracing::warn!(point = name, "crash point reached: killing the agent");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Kills the process here if the test asked for it (compiled out).
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}
