//! `[probe]`: how versions and host facts are observed.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// How versions and host facts are observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time allowed for a version command.
    pub version_timeout: Duration,
    /// How often versions are probed between operations.
    pub interval: Duration,
    /// How often host facts are refreshed.
    pub host_facts_interval: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            version_timeout: Duration::from_secs(5),
            interval: Duration::from_secs(30),
            host_facts_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawProbe {
    version_timeout_secs: Option<u64>,
    interval_secs: Option<u64>,
    host_facts_interval_secs: Option<u64>,
}

pub(super) fn validate_probe(raw: RawProbe, problems: &mut Problems) -> ProbeSettings {
    let default = ProbeSettings::default();
    ProbeSettings {
        version_timeout: problems.seconds(
            "probe.version_timeout_secs",
            raw.version_timeout_secs,
            default.version_timeout,
            (1, 300),
        ),
        interval: problems.seconds("probe.interval_secs", raw.interval_secs, default.interval, (1, 86_400)),
        host_facts_interval: problems.seconds(
            "probe.host_facts_interval_secs",
            raw.host_facts_interval_secs,
            default.host_facts_interval,
            (1, 3_600),
        ),
    }
}
