//! `[timeouts]`: the longest each upgrade step may run.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// The longest each upgrade step may run before it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTimeouts {
    /// PreCheck.
    pub precheck: Duration,
    /// Stage (download and verify).
    pub stage: Duration,
    /// Cordon and Uncordon.
    pub cordon: Duration,
    /// Drain, unless the request sets its own.
    pub drain: Duration,
    /// Swap.
    pub swap: Duration,
    /// Restart.
    pub restart: Duration,
    /// PostCheck, including waiting for the new version to answer and be healthy.
    pub postcheck: Duration,
}

impl Default for StepTimeouts {
    fn default() -> Self {
        Self {
            precheck: Duration::from_secs(60),
            stage: Duration::from_secs(900),
            cordon: Duration::from_secs(60),
            drain: Duration::from_secs(900),
            swap: Duration::from_secs(60),
            restart: Duration::from_secs(120),
            postcheck: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTimeouts {
    precheck_secs: Option<u64>,
    stage_secs: Option<u64>,
    cordon_secs: Option<u64>,
    drain_secs: Option<u64>,
    swap_secs: Option<u64>,
    restart_secs: Option<u64>,
    postcheck_secs: Option<u64>,
}

pub(super) fn validate_timeouts(raw: RawTimeouts, problems: &mut Problems) -> StepTimeouts {
    let default = StepTimeouts::default();
    let range = (1, 86_400);
    StepTimeouts {
        precheck: problems.seconds("timeouts.precheck_secs", raw.precheck_secs, default.precheck, range),
        stage: problems.seconds("timeouts.stage_secs", raw.stage_secs, default.stage, range),
        cordon: problems.seconds("timeouts.cordon_secs", raw.cordon_secs, default.cordon, range),
        drain: problems.seconds("timeouts.drain_secs", raw.drain_secs, default.drain, range),
        swap: problems.seconds("timeouts.swap_secs", raw.swap_secs, default.swap, range),
        restart: problems.seconds("timeouts.restart_secs", raw.restart_secs, default.restart, range),
        postcheck: problems.seconds("timeouts.postcheck_secs", raw.postcheck_secs, default.postcheck, range),
    }
}
