//! The cluster as `GET /v1/clusters/{cluster}` answers it, computed from the
//! spec, the running or last update, the nodes as last read, the history and
//! the catalog. Pure: the caller gathers the inputs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use upkeep_common::Version;
use upkeep_common::api::{Condition, ConditionStatus, ConditionType};

use crate::catalog::{Catalog, Release, Risk};
use crate::report::Counters;

use super::model::{ClusterSpec, HistoryEntry, RoleCounters, Update, UpdateStatus};
use super::nodes::{NodeView, nodes_by_version, observed_version, oldest_version};

/// A release the cluster may move to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AvailableUpdate {
    /// Its version.
    pub version: Version,
    /// The channels that offer it.
    pub channels: Vec<String>,
}

/// A release the cluster may move to once its risks are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConditionalUpdate {
    /// The release.
    pub release: AvailableUpdate,
    /// Its known risks.
    pub risks: Vec<Risk>,
}

/// The cluster as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    /// At rest.
    Running,
    /// An update runs.
    Upgrading,
    /// The last update failed, or a node reports Degraded.
    Degraded,
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterStatus::Running => "running",
            ClusterStatus::Upgrading => "upgrading",
            ClusterStatus::Degraded => "degraded",
        })
    }
}

/// The cluster's state in the shape platforms expect; the service's client
/// reads it back as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The cluster.
    pub name: String,
    /// What was asked (the `ETag` covers this only).
    pub spec: ClusterSpec,
    /// The desired version.
    pub k8s_version: Option<Version>,
    /// The one version every node reports; null while the fleet is mixed.
    pub observed_kubernetes_version: Option<Version>,
    /// The spec generation the service has acted on.
    pub observed_generation: u64,
    /// `running`, `upgrading` or `degraded`.
    pub status: ClusterStatus,
    /// A sentence for a person.
    pub status_message: String,
    /// Workers upgraded by the current or last update.
    pub workers_patched: usize,
    /// Workers already at its target.
    pub workers_skipped: usize,
    /// Whether some workers are still to do.
    pub workers_pending: bool,
    /// A summary of the workers in error, when some are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_error: Option<String>,
    /// The counters by role.
    pub counters: RoleCounters,
    /// How many nodes report each version.
    pub nodes_by_version: BTreeMap<String, usize>,
    /// Available, Progressing, Degraded.
    pub conditions: Vec<Condition>,
    /// Past updates, newest first (left out of the cluster list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
    /// Releases the cluster may move to.
    pub available_updates: Vec<AvailableUpdate>,
    /// Releases with known risks.
    pub conditional_updates: Vec<ConditionalUpdate>,
    /// The running update's id.
    pub current_update: Option<String>,
    /// The replica driving the cluster.
    pub leader: String,
}

/// What the view is computed from.
pub struct ViewInput<'a> {
    /// The cluster.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a ClusterSpec,
    /// The spec generation acted on.
    pub observed_generation: u64,
    /// The running update, if any, else the last one.
    pub update: Option<&'a Update>,
    /// The nodes as last read.
    pub nodes: &'a [NodeView],
    /// Its history, when it is shown.
    pub history: Option<&'a [HistoryEntry]>,
    /// Its catalog.
    pub catalog: &'a Catalog,
    /// The conditions as last shown, for their transition times.
    pub conditions: &'a [Condition],
    /// This replica.
    pub replica: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
}

/// Computes the view.
pub fn cluster_view(input: ViewInput<'_>) -> ClusterView {
    let running = input.update.filter(|u| !u.status.is_final());
    let counters = input.update.map(|u| u.counters).unwrap_or_default();
    let workers: Counters = counters.workers;
    let degraded = input.update.is_some_and(|u| u.status == UpdateStatus::Failed)
        || input.nodes.iter().any(|n| n.phase == Some(upkeep_common::api::NodePhase::Degraded));
    let (status, status_message) = match (running, degraded) {
        (Some(update), _) => (
            ClusterStatus::Upgrading,
            format!("update {} to {} is {:?}", update.id, update.target_version, update.status),
        ),
        (None, true) => (ClusterStatus::Degraded, degraded_message(input.update)),
        (None, false) => (ClusterStatus::Running, "the cluster is at rest".to_owned()),
    };
    let (available, conditional) = match oldest_version(input.nodes) {
        Some(current) => {
            let updates = input.catalog.updates_from(&current);
            (
                updates.available.iter().map(|r| available(r)).collect(),
                updates
                    .conditional
                    .iter()
                    .map(|r| ConditionalUpdate { release: available(r), risks: r.risks.clone() })
                    .collect(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut conditions = input.conditions.to_vec();
    let observed = observed_version(input.nodes);
    let (available_status, available_reason) = if input.nodes.iter().all(|n| n.last_error.is_none()) {
        (ConditionStatus::True, "NodesAnswer")
    } else {
        (ConditionStatus::False, "NodesUnreadable")
    };
    let available_message = format!("{} nodes, versions {:?}", input.nodes.len(), nodes_by_version(input.nodes));
    Condition::set(
        &mut conditions,
        ConditionType::Available,
        available_status,
        available_reason,
        &available_message,
        input.now,
    );
    let (progressing, reason) =
        if running.is_some() { (ConditionStatus::True, "UpdateRunning") } else { (ConditionStatus::False, "AtRest") };
    Condition::set(&mut conditions, ConditionType::Progressing, progressing, reason, &status_message, input.now);
    let (degraded_status, reason) =
        if degraded { (ConditionStatus::True, "UpdateFailed") } else { (ConditionStatus::False, "Healthy") };
    let message = if degraded { degraded_message(input.update) } else { "no failure".to_owned() };
    Condition::set(&mut conditions, ConditionType::Degraded, degraded_status, reason, &message, input.now);
    ClusterView {
        name: input.name.to_owned(),
        spec: input.spec.clone(),
        k8s_version: input.spec.version.clone(),
        observed_kubernetes_version: observed,
        observed_generation: input.observed_generation,
        status,
        status_message,
        workers_patched: workers.patched,
        workers_skipped: workers.skipped,
        workers_pending: workers.pending > 0,
        workers_error: (workers.error > 0).then(|| workers_error(input.update, workers.error)),
        counters,
        nodes_by_version: nodes_by_version(input.nodes),
        conditions,
        history: input.history.map(<[HistoryEntry]>::to_vec),
        available_updates: available,
        conditional_updates: conditional,
        current_update: running.map(|u| u.id.clone()),
        leader: input.replica.to_owned(),
    }
}

fn available(release: &Release) -> AvailableUpdate {
    AvailableUpdate { version: release.version.clone(), channels: release.channels.clone() }
}

fn degraded_message(update: Option<&Update>) -> String {
    match update.and_then(|u| u.errors.first().map(|e| (u, e))) {
        Some((update, error)) => format!(
            "update {} failed: {} ({}) on {}",
            update.id,
            error.error_message,
            error.error_code,
            error.resource_ids.join(", ")
        ),
        None => "a node reports Degraded".to_owned(),
    }
}

/// The seed-shaped error summary: how many workers failed and the first codes.
fn workers_error(update: Option<&Update>, count: usize) -> String {
    let codes: Vec<&str> = update.map(|u| u.errors.iter().map(|e| e.error_code.as_str()).collect()).unwrap_or_default();
    let mut unique: Vec<&str> = Vec::new();
    for code in codes {
        if !unique.contains(&code) {
            unique.push(code);
        }
    }
    format!("{count} workers failed: {}", unique.join(", "))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use upkeep_common::api::{ConditionStatus, ConditionType};

    use std::collections::BTreeMap;

    use upkeep_common::Version;
    use upkeep_common::api::Condition;

    use super::*;
    use crate::catalog::Risk;
    use crate::report::Counters;
    use crate::service::model::{ClusterSpec, HistoryEntry, HistoryState, RoleCounters};

    fn version(text: &str) -> Version {
        text.parse().expect("valid version")
    }

    /// A view with every optional field filled, so that a field the client
    /// misses or spells differently shows.
    fn full_view() -> ClusterView {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).single().expect("valid time");
        ClusterView {
            name: "prod-eu".into(),
            spec: ClusterSpec { version: Some(version("v1.31.2")), channel: "stable".into(), generation: 3 },
            k8s_version: Some(version("v1.31.2")),
            observed_kubernetes_version: None,
            observed_generation: 2,
            status: ClusterStatus::Upgrading,
            status_message: "update u-1 to v1.31.2 is InProgress".into(),
            workers_patched: 4,
            workers_skipped: 1,
            workers_pending: true,
            workers_error: Some("1 workers failed: health_check_failed".into()),
            counters: RoleCounters {
                control_plane: Counters { patched: 3, skipped: 0, pending: 0, error: 0 },
                workers: Counters { patched: 4, skipped: 1, pending: 2, error: 1 },
            },
            nodes_by_version: BTreeMap::from([("v1.30.5".to_owned(), 3), ("v1.31.2".to_owned(), 7)]),
            conditions: vec![Condition {
                kind: ConditionType::Progressing,
                status: ConditionStatus::True,
                reason: "UpdateRunning".into(),
                message: "update u-1".into(),
                last_transition_time: at,
            }],
            history: Some(vec![HistoryEntry {
                version: version("v1.30.5"),
                state: HistoryState::Partial,
                update: "u-0".into(),
                started_at: at,
                completed_at: at,
                verified: false,
                accepted_risks: vec!["CgroupV1Removed".into()],
            }]),
            available_updates: vec![AvailableUpdate { version: version("v1.31.3"), channels: vec!["stable".into()] }],
            conditional_updates: vec![ConditionalUpdate {
                release: AvailableUpdate { version: version("v1.32.0"), channels: vec!["fast".into()] },
                risks: vec![Risk { name: "CgroupV1Removed".into(), message: "cgroup v1 nodes stop".into() }],
            }],
            current_update: Some("u-1".into()),
            leader: "replica-a".into(),
        }
    }

    #[test]
    fn a_cluster_view_reads_back_without_losing_a_field() {
        let view = full_view();
        let sent = serde_json::to_value(&view).expect("serializes");
        let read: ClusterView = serde_json::from_value(sent.clone()).expect("a client reads the view");
        assert_eq!(sent["status"], "upgrading");
        assert_eq!(read, view);
        assert_eq!(read.counters.workers.error, 1);
        assert_eq!(
            serde_json::to_value(&read).expect("serializes"),
            sent,
            "every field, spelled as the view spells it"
        );
    }

    #[test]
    fn a_listed_cluster_without_history_or_worker_error_reads() {
        let mut view = full_view();
        view.history = None;
        view.workers_error = None;
        let sent = serde_json::to_value(&view).expect("serializes");
        assert!(sent.get("history").is_none() && sent.get("workers_error").is_none(), "left out when absent");
        let read: ClusterView = serde_json::from_value(sent.clone()).expect("reads");
        assert_eq!((read.history, read.workers_error), (None, None));
    }
}
