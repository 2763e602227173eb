//! A cluster's rollout policy: its section of the config file, its checks, and
//! the overrides an admin's request may bring, which may only narrow it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use upkeep_common::ErrorDetail;

use super::values::{
    LimitInput, duration_text, format_duration, limit_text, optional_duration, optional_limit, parse_duration,
};
use crate::plan::Limit;
use crate::rollout::{DriverSettings, NODE_TIMEOUT_RANGE};

/// The longest soak a policy may ask for: one day.
pub const MAX_SOAK: Duration = Duration::from_secs(24 * 3600);
/// The largest per-zone count.
pub const MAX_PER_ZONE: u64 = 100_000;

/// How a cluster's updates roll. Serialized as it is written in the config
/// (`"10%"`, `"60s"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Nodes that may be unavailable at once (resolved with [`Limit::resolve_nonzero`]).
    #[serde(serialize_with = "limit_text")]
    pub max_unavailable: Limit,
    /// Failures tolerated before no new node starts (resolved with [`Limit::resolve`]).
    #[serde(serialize_with = "limit_text")]
    pub max_failures: Limit,
    /// Nodes of one zone in flight at once.
    pub per_zone: Option<usize>,
    /// How long a patched node must stay Ready before its slot is reused.
    #[serde(serialize_with = "duration_text")]
    pub soak: Duration,
    /// Stage the artifacts on every node before any swap.
    pub prestage: bool,
    /// The longest one node's upgrade may take (within [`NODE_TIMEOUT_RANGE`]).
    #[serde(serialize_with = "duration_text")]
    pub node_timeout: Duration,
}

impl Default for Policy {
    /// The one-shot CLI's defaults: one node at a time, no failure tolerated.
    fn default() -> Self {
        Policy {
            max_unavailable: Limit::Count(1),
            max_failures: Limit::Count(0),
            per_zone: None,
            soak: Duration::ZERO,
            prestage: false,
            node_timeout: DriverSettings::default().node_timeout,
        }
    }
}

/// The policy section as written (`[clusters.policy]`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPolicy {
    #[serde(default)]
    max_unavailable: Option<LimitInput>,
    #[serde(default)]
    max_failures: Option<LimitInput>,
    #[serde(default)]
    per_zone: Option<u64>,
    #[serde(default)]
    soak: Option<String>,
    #[serde(default)]
    prestage: Option<bool>,
    #[serde(default)]
    node_timeout: Option<String>,
    #[serde(default)]
    gates: Option<toml::Value>,
    #[serde(default)]
    windows: Option<toml::Value>,
}

/// Checks the section; absent keys take [`Policy::default`]. Each problem is
/// `(key under the section, why)`.
pub(super) fn validate(raw: RawPolicy, problems: &mut Vec<(String, String)>) -> Option<Policy> {
    let before = problems.len();
    let defaults = Policy::default();
    let max_unavailable = raw.max_unavailable.map_or(Ok(defaults.max_unavailable), |input| input.parse());
    let max_unavailable =
        keep(problems, "max_unavailable", max_unavailable.and_then(|limit| lets_a_node_go(limit).map(|()| limit)));
    let max_failures =
        keep(problems, "max_failures", raw.max_failures.map_or(Ok(defaults.max_failures), |input| input.parse()));
    let per_zone = keep(
        problems,
        "per_zone",
        match raw.per_zone {
            None => Ok(None),
            Some(count @ 1..=MAX_PER_ZONE) => Ok(usize::try_from(count).ok()),
            Some(count) => Err(format!("{count} is not from 1 to {MAX_PER_ZONE}")),
        },
    );
    let soak = keep(
        problems,
        "soak",
        raw.soak.map_or(Ok(defaults.soak), |text| parse_duration(&text)).and_then(soak_in_range),
    );
    let node_timeout = raw.node_timeout.map_or(Ok(defaults.node_timeout), |text| parse_duration(&text));
    let node_timeout = keep(problems, "node_timeout", node_timeout.and_then(node_timeout_in_range));
    let unsupported =
        |what: &str| format!("{what} are not supported by this build yet; remove them (they are never ignored)");
    if raw.gates.is_some() {
        problems.push(("gates".to_owned(), unsupported("health gates")));
    }
    if raw.windows.is_some() {
        problems.push(("windows".to_owned(), unsupported("maintenance windows")));
    }
    if problems.len() > before {
        return None;
    }
    Some(Policy {
        max_unavailable: max_unavailable?,
        max_failures: max_failures?,
        per_zone: per_zone?,
        soak: soak?,
        prestage: raw.prestage.unwrap_or(defaults.prestage),
        node_timeout: node_timeout?,
    })
}

fn keep<T>(problems: &mut Vec<(String, String)>, key: &str, result: Result<T, String>) -> Option<T> {
    result.map_err(|why| problems.push((key.to_owned(), why))).ok()
}

fn node_timeout_in_range(timeout: Duration) -> Result<Duration, String> {
    if NODE_TIMEOUT_RANGE.contains(&timeout) {
        return Ok(timeout);
    }
    let (low, high) = (format_duration(*NODE_TIMEOUT_RANGE.start()), format_duration(*NODE_TIMEOUT_RANGE.end()));
    Err(format!("{} is not from {low} to {high}", format_duration(timeout)))
}

fn lets_a_node_go(limit: Limit) -> Result<(), String> {
    match limit {
        Limit::Count(0) | Limit::Percent(0) => Err("must let at least one node be unavailable".to_owned()),
        _ => Ok(()),
    }
}

fn soak_in_range(soak: Duration) -> Result<Duration, String> {
    if soak <= MAX_SOAK {
        Ok(soak)
    } else {
        Err(format!("{} is longer than {}", format_duration(soak), format_duration(MAX_SOAK)))
    }
}

/// The policy overrides of an upgrade request (admin only). Each may only
/// narrow the cluster's policy; gates and windows never come from a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverrides {
    /// Fewer nodes unavailable at once: `"5%"`, `"2"` or `2`.
    #[serde(default, deserialize_with = "optional_limit")]
    pub max_unavailable: Option<Limit>,
    /// Fewer failures tolerated.
    #[serde(default, deserialize_with = "optional_limit")]
    pub max_failures: Option<Limit>,
    /// A longer soak: `"30s"`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub soak: Option<Duration>,
}

impl Policy {
    /// This policy with `overrides` applied, for a fleet of `fleet_size`
    /// nodes. Limits are compared as the rollout resolves them for that fleet
    /// (so `"10%"` of 20 nodes and `"2"` are equal); an override that would
    /// widen the policy, or that is out of range, is refused with a detail
    /// naming its field (`policy.max_unavailable`), every one at once.
    pub fn narrowed(&self, overrides: &PolicyOverrides, fleet_size: usize) -> Result<Policy, Vec<ErrorDetail>> {
        let mut details = Vec::new();
        let mut narrowed = self.clone();
        let widens = |field: &str, wanted: String, allowed: String| {
            ErrorDetail::new(
                format!("policy.{field}"),
                "widens_policy",
                format!("{wanted} would widen the cluster's policy ({allowed}); a request may only narrow it"),
            )
        };
        if let Some(limit) = overrides.max_unavailable {
            let (wanted, allowed) =
                (limit.resolve_nonzero(fleet_size), self.max_unavailable.resolve_nonzero(fleet_size));
            if let Err(why) = lets_a_node_go(limit) {
                details.push(ErrorDetail::new("policy.max_unavailable", "out_of_range", why));
            } else if wanted > allowed {
                let shown = format!("max_unavailable {limit} ({wanted} of {fleet_size} nodes)");
                details.push(widens("max_unavailable", shown, format!("{} is {allowed}", self.max_unavailable)));
            } else {
                narrowed.max_unavailable = limit;
            }
        }
        if let Some(limit) = overrides.max_failures {
            let (wanted, allowed) = (limit.resolve(fleet_size), self.max_failures.resolve(fleet_size));
            if wanted > allowed {
                let shown = format!("max_failures {limit} ({wanted} of {fleet_size} nodes)");
                details.push(widens("max_failures", shown, format!("{} is {allowed}", self.max_failures)));
            } else {
                narrowed.max_failures = limit;
            }
        }
        if let Some(soak) = overrides.soak {
            if soak < self.soak {
                let shown = format!("soak {}", format_duration(soak));
                details.push(widens("soak", shown, format!("at least {}", format_duration(self.soak))));
            } else if let Err(why) = soak_in_range(soak) {
                details.push(ErrorDetail::new("policy.soak", "out_of_range", why));
            } else {
                narrowed.soak = soak;
            }
        }
        if details.is_empty() { Ok(narrowed) } else { Err(details) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_unavailable: Limit::Percent(10),
            max_failures: Limit::Count(2),
            soak: Duration::from_secs(60),
            ..Policy::default()
        }
    }

    fn overrides(json: serde_json::Value) -> PolicyOverrides {
        serde_json::from_value(json).expect("valid overrides")
    }

    fn fields(details: &[ErrorDetail]) -> Vec<(&str, &str)> {
        details.iter().map(|d| (d.field.as_str(), d.code.as_str())).collect()
    }

    #[test]
    fn narrowing_is_applied() {
        let narrowed = policy()
            .narrowed(&overrides(serde_json::json!({"max_unavailable": 1, "max_failures": "0", "soak": "5m"})), 40)
            .expect("narrower");
        assert_eq!(narrowed.max_unavailable, Limit::Count(1));
        assert_eq!(narrowed.max_failures, Limit::Count(0));
        assert_eq!(narrowed.soak, Duration::from_secs(300));
        assert_eq!(narrowed.node_timeout, policy().node_timeout);
        assert_eq!(policy().narrowed(&PolicyOverrides::default(), 40), Ok(policy()));
        let same =
            policy().narrowed(&overrides(serde_json::json!({"max_unavailable": "4"})), 40).expect("10% of 40 is 4");
        assert_eq!(same.max_unavailable, Limit::Count(4));
    }

    #[test]
    fn a_policy_is_shown_as_it_is_written() {
        let shown = serde_json::to_value(policy()).expect("serializes");
        assert_eq!(
            shown,
            serde_json::json!({"max_unavailable": "10%", "max_failures": "2", "per_zone": null, "soak": "1m",
                "prestage": false, "node_timeout": "1h"})
        );
    }

    #[test]
    fn every_widening_is_refused_by_its_field() {
        let wide = overrides(serde_json::json!({"max_unavailable": "5", "max_failures": "10%", "soak": "59s"}));
        let details = policy().narrowed(&wide, 40).expect_err("wider");
        assert_eq!(
            fields(&details),
            [
                ("policy.max_unavailable", "widens_policy"),
                ("policy.max_failures", "widens_policy"),
                ("policy.soak", "widens_policy")
            ]
        );
        assert!(details[0].message.contains("5 of 40 nodes"), "{}", details[0].message);
        let alone = policy().narrowed(&overrides(serde_json::json!({"max_failures": 3})), 40).expect_err("wider");
        assert_eq!(fields(&alone), [("policy.max_failures", "widens_policy")]);
        let zero = policy().narrowed(&overrides(serde_json::json!({"max_unavailable": "0%"})), 40).expect_err("none");
        assert_eq!(fields(&zero), [("policy.max_unavailable", "out_of_range")]);
        let long = Policy { soak: Duration::ZERO, ..policy() };
        let days = long.narrowed(&overrides(serde_json::json!({"soak": "25h"})), 40).expect_err("too long");
        assert_eq!(fields(&days), [("policy.soak", "out_of_range")]);
    }

    #[test]
    fn overrides_refuse_unknown_fields_and_bad_values() {
        assert!(serde_json::from_value::<PolicyOverrides>(serde_json::json!({"gates": []})).is_err());
        assert!(serde_json::from_value::<PolicyOverrides>(serde_json::json!({"soak": "soon"})).is_err());
        assert!(serde_json::from_value::<PolicyOverrides>(serde_json::json!({"max_failures": "101%"})).is_err());
        assert!(serde_json::from_value::<PolicyOverrides>(serde_json::json!({"max_failures": -1})).is_err());
    }
}
