//! Named points in the engine where the durability tests kill the agent.
//!
//! The product binary installs nothing here, so every point is a no-op in it;
//! the tests build an agent binary of their own (in the tests package) that
//! installs a hook killing the process at the point its environment names.
//! No feature flag is involved, so no build of the workspace can turn the
//! kill on in `upkeep-agent`.
//!
//! Names: `before:STEP` and `after:STEP` around every step (STEP as in the
//! API, such as `Swap`), `stage:COMPONENT` after each staged artifact,
//! `swap:backup:COMPONENT` and `swap:rename:COMPONENT` inside Swap, and
//! `rollback:restore:COMPONENT` inside a rollback.

use std::sync::OnceLock;

/// What runs at each point.
type Hook = Box<dyn Fn(&str) + Send + Sync>;

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the process's hook; false if one was installed already.
pub fn install(hook: impl Fn(&str) + Send + Sync + 'static) -> bool {
    HOOK.set(Box::new(hook)).is_ok()
}

/// Runs the installed hook, if any, at the point `name`.
pub fn crash_point(name: &str) {
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
}
