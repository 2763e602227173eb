//! A cluster as the service's client reads it: the fields of
//! [`ClusterView`](crate::service::view::ClusterView), with `status` as text
//! (the view holds it as a static string, which cannot be read back).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use upkeep_common::Version;
use upkeep_common::api::Condition;

use crate::service::model::{ClusterSpec, HistoryEntry, RoleCounters};
use crate::service::view::{AvailableUpdate, ConditionalUpdate};

/// `GET /v1/clusters/{cluster}` as read by a client. Field for field the
/// service's view; see there for what each means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCluster {
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
    pub status: String,
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

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use upkeep_common::api::{ConditionStatus, ConditionType};

    use super::*;
    use crate::catalog::Risk;
    use crate::report::Counters;
    use crate::service::model::HistoryState;
    use crate::service::view::ClusterView;

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
            status: "upgrading",
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
        let read: RemoteCluster = serde_json::from_value(sent.clone()).expect("the client reads the view");
        assert_eq!(read.status, "upgrading");
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
        let read: RemoteCluster = serde_json::from_value(sent.clone()).expect("reads");
        assert_eq!((read.history, read.workers_error), (None, None));
    }
}
