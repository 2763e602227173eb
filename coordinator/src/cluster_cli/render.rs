//! The service's answers as a person reads them: short aligned tables and
//! one line per event. Pure: strings from values.

use chrono::{DateTime, Utc};
use upkeep_common::Version;

use crate::report::Counters;
use crate::service::model::{EventKind, Update, UpdateEvent};
use crate::service::view::ClusterView;
use crate::status::aligned;

/// The cluster list: one line per cluster.
pub fn clusters(clusters: &[ClusterView]) -> String {
    let mut rows = vec![header(&["CLUSTER", "STATUS", "DESIRED", "OBSERVED", "CONTROL PLANE", "WORKERS", "UPDATE"])];
    for cluster in clusters {
        rows.push(vec![
            cluster.name.clone(),
            cluster.status.to_string(),
            version(cluster.k8s_version.as_ref()),
            version(cluster.observed_kubernetes_version.as_ref()),
            counters(&cluster.counters.control_plane),
            counters(&cluster.counters.workers),
            cluster.current_update.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    aligned(&rows).join("\n")
}

/// One cluster: its state, conditions, node versions, updates on offer and recent history.
pub fn cluster(cluster: &ClusterView, etag: Option<&str>) -> String {
    let spec = &cluster.spec;
    let mut rows = vec![
        field("cluster", cluster.name.clone()),
        field("status", format!("{}: {}", cluster.status, cluster.status_message)),
        field("desired", version(cluster.k8s_version.as_ref())),
        field("observed", version(cluster.observed_kubernetes_version.as_ref())),
        field("channel", spec.channel.clone()),
        field("generation", format!("{} (observed {})", spec.generation, cluster.observed_generation)),
        field("control plane", counters(&cluster.counters.control_plane)),
        field("workers", counters(&cluster.counters.workers)),
        field("update", cluster.current_update.clone().unwrap_or_else(|| "-".into())),
        field("leader", cluster.leader.clone()),
    ];
    if let Some(summary) = &cluster.workers_error {
        rows.push(field("worker errors", summary.clone()));
    }
    let by_version: Vec<String> = cluster.nodes_by_version.iter().map(|(v, n)| format!("{v}={n}")).collect();
    rows.push(field("nodes", list(&by_version)));
    let available: Vec<String> = cluster.available_updates.iter().map(|u| u.version.to_string()).collect();
    rows.push(field("available", list(&available)));
    let conditional: Vec<String> = cluster
        .conditional_updates
        .iter()
        .map(|u| {
            let risks: Vec<&str> = u.risks.iter().map(|risk| risk.name.as_str()).collect();
            format!("{} (risks: {})", u.release.version, risks.join(", "))
        })
        .collect();
    rows.push(field("conditional", list(&conditional)));
    if let Some(etag) = etag {
        rows.push(field("etag", etag.to_owned()));
    }
    let mut text = aligned(&rows);
    let mut conditions = vec![header(&["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"])];
    for condition in &cluster.conditions {
        conditions.push(vec![
            format!("{:?}", condition.kind),
            format!("{:?}", condition.status),
            condition.reason.clone(),
            time(Some(condition.last_transition_time)),
            condition.message.clone(),
        ]);
    }
    text.push(String::new());
    text.extend(aligned(&conditions));
    if let Some(history) = cluster.history.as_deref().filter(|history| !history.is_empty()) {
        let mut rows = vec![header(&["VERSION", "STATE", "UPDATE", "STARTED", "COMPLETED", "VERIFIED"])];
        for entry in history.iter().take(HISTORY_SHOWN) {
            rows.push(vec![
                entry.version.to_string(),
                format!("{:?}", entry.state),
                entry.update.clone(),
                time(Some(entry.started_at)),
                time(Some(entry.completed_at)),
                entry.verified.to_string(),
            ]);
        }
        text.push(String::new());
        text.extend(aligned(&rows));
    }
    text.join("\n")
}

/// History entries a person sees (`--output json` has them all).
pub const HISTORY_SHOWN: usize = 5;

/// One update: what it does, its tasks, counters and errors.
pub fn update(update: &Update) -> String {
    let mut rows = vec![
        field("update", update.id.clone()),
        field("cluster", update.cluster.clone()),
        field("type", format!("{:?}", update.kind)),
        field("target", update.target_version.to_string()),
        field("status", format!("{:?}", update.status)),
        field("created", time(Some(update.created_at))),
        field("ended", time(update.ended_at)),
        field("requested by", update.requested_by.clone()),
        field("control plane", counters(&update.counters.control_plane)),
        field("workers", counters(&update.counters.workers)),
    ];
    if let Some(waiting) = &update.waiting {
        rows.push(field("waiting", format!("{}: {}", waiting.reason, waiting.message)));
    }
    if !update.accepted_risks.is_empty() {
        rows.push(field("accepted risks", update.accepted_risks.join(", ")));
    }
    let mut text = aligned(&rows);
    let mut tasks = vec![header(&["TASK", "STATUS", "STARTED", "ENDED", "MESSAGE"])];
    for task in &update.tasks {
        tasks.push(vec![
            format!("{:?}", task.kind),
            format!("{:?}", task.status),
            time(task.started_at),
            time(task.ended_at),
            task.message.clone(),
        ]);
    }
    text.push(String::new());
    text.extend(aligned(&tasks));
    if !update.errors.is_empty() {
        let mut errors = vec![header(&["ERROR", "TASK", "NODES", "MESSAGE"])];
        for error in &update.errors {
            errors.push(vec![
                error.error_code.clone(),
                format!("{:?}", error.task),
                error.resource_ids.join(","),
                error.error_message.clone(),
            ]);
        }
        text.push(String::new());
        text.extend(aligned(&errors));
    }
    text.join("\n")
}

/// One event as a line, or nothing for an event the progress bar shows.
pub fn event(event: &UpdateEvent) -> Option<String> {
    match &event.kind {
        EventKind::Task { task, status, message } if message.is_empty() => Some(format!("{task:?}: {status:?}")),
        EventKind::Task { task, status, message } => Some(format!("{task:?}: {status:?}: {message}")),
        EventKind::NodeStarted { .. } => None,
        EventKind::NodeFinished { node, outcome, error_code: Some(code), .. } => {
            Some(format!("{node}: {outcome} {code}"))
        }
        EventKind::NodeFinished { node, outcome, error_code: None, .. } => Some(format!("{node}: {outcome}")),
        EventKind::Halted { reason } => Some(format!("no new node will start: {reason}")),
        EventKind::Status { status } => Some(format!("update is {status:?}")),
    }
}

/// `patched 3 skipped 1 pending 0 error 1`.
pub fn counters(counters: &Counters) -> String {
    format!(
        "patched {} skipped {} pending {} error {}",
        counters.patched, counters.skipped, counters.pending, counters.error
    )
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn field(name: &str, value: String) -> Vec<String> {
    vec![format!("{name}:"), value]
}

fn version(version: Option<&Version>) -> String {
    version.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::plan::{Halt, Limits};
    use crate::service::model::{
        ClusterSpec, RoleCounters, TaskStatus, TaskType, UpdateError, UpdateStatus, UpdateType,
    };

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, second).single().expect("valid time")
    }

    fn v(text: &str) -> Version {
        text.parse().expect("valid version")
    }

    fn remote(name: &str, current: Option<&str>) -> ClusterView {
        ClusterView {
            name: name.into(),
            spec: ClusterSpec { version: Some(v("v1.31.2")), channel: "stable".into(), generation: 2 },
            k8s_version: Some(v("v1.31.2")),
            observed_kubernetes_version: None,
            observed_generation: 2,
            status: crate::service::view::ClusterStatus::Upgrading,
            status_message: "update u-1 to v1.31.2 is InProgress".into(),
            workers_patched: 2,
            workers_skipped: 0,
            workers_pending: true,
            workers_error: Some("1 workers failed: health_check_failed".into()),
            counters: RoleCounters {
                control_plane: Counters { patched: 1, skipped: 0, pending: 0, error: 0 },
                workers: Counters { patched: 2, skipped: 0, pending: 3, error: 1 },
            },
            nodes_by_version: [("v1.30.5".to_owned(), 4), ("v1.31.2".to_owned(), 3)].into(),
            conditions: Vec::new(),
            history: None,
            available_updates: Vec::new(),
            conditional_updates: Vec::new(),
            current_update: current.map(str::to_owned),
            leader: "replica-a".into(),
        }
    }

    fn failed_update() -> Update {
        let mut tasks = Update::fresh_tasks();
        for (task, status) in tasks.iter_mut().zip([TaskStatus::Success, TaskStatus::Success, TaskStatus::Failed]) {
            task.status = status;
            task.started_at = Some(at(1));
            task.ended_at = Some(at(9));
        }
        tasks[2].message = "1 worker failed".into();
        Update {
            id: "u-1".into(),
            cluster: "prod-eu".into(),
            kind: UpdateType::VersionUpdate,
            params: Vec::new(),
            target_version: v("v1.31.2"),
            status: UpdateStatus::Failed,
            created_at: at(0),
            ended_at: Some(at(9)),
            requested_by: "ops".into(),
            request_token: None,
            force: false,
            accepted_risks: Vec::new(),
            limits: Limits { max_unavailable: 1, max_failures: 0, per_zone: None, soak_ms: 0 },
            prestage: false,
            node_timeout_secs: 600,
            errors: vec![UpdateError {
                error_code: "health_check_failed".into(),
                error_message: "kubelet did not become Ready".into(),
                task: TaskType::Upgrade,
                resource_ids: vec!["worker-3".into(), "worker-4".into()],
            }],
            tasks,
            waiting: None,
            counters: RoleCounters {
                control_plane: Counters { patched: 1, skipped: 0, pending: 0, error: 0 },
                workers: Counters { patched: 2, skipped: 0, pending: 3, error: 1 },
            },
        }
    }

    #[test]
    fn the_cluster_list_is_one_aligned_line_per_cluster() {
        let text = clusters(&[remote("prod-eu", Some("u-1")), remote("dev", None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "prod-eu  upgrading  v1.31.2  -         patched 1 skipped 0 pending 0 error 0  \
             patched 2 skipped 0 pending 3 error 1  u-1"
        );
        assert_eq!(lines[0].find("STATUS"), lines[2].find("upgrading"), "columns line up");
        assert!(lines[2].ends_with("  -"), "no update shows as -: {}", lines[2]);
    }

    #[test]
    fn a_cluster_shows_its_state_node_versions_and_etag() {
        let text = cluster(&remote("prod-eu", Some("u-1")), Some("\"abc\""));
        for expected in [
            "status:         upgrading: update u-1 to v1.31.2 is InProgress",
            "observed:       -",
            "worker errors:  1 workers failed: health_check_failed",
            "nodes:          v1.30.5=4, v1.31.2=3",
            "available:      -",
            "etag:           \"abc\"",
        ] {
            assert!(text.lines().any(|line| line == expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn an_update_shows_its_tasks_and_the_nodes_of_each_error() {
        let text = update(&failed_update());
        assert!(text.lines().any(|line| line == "status:         Failed"), "{text}");
        let task_lines: Vec<&str> = text.lines().skip_while(|line| !line.starts_with("TASK")).take(5).collect();
        assert_eq!(task_lines[3], "Upgrade    Failed   2026-11-30 08:00:01Z  2026-11-30 08:00:09Z  1 worker failed");
        assert_eq!(task_lines[4], "PostCheck  Init     -                     -", "{text}");
        assert!(
            text.lines()
                .any(|line| line == "health_check_failed  Upgrade  worker-3,worker-4  kubelet did not become Ready"),
            "{text}"
        );
    }

    #[test]
    fn events_read_as_lines_and_node_starts_are_left_to_the_bar() {
        let event = |kind| UpdateEvent { seq: 4, at: at(4), kind };
        let finished = EventKind::NodeFinished {
            node: "worker-3".into(),
            outcome: "error".into(),
            error_code: Some("health_check_failed".into()),
            counters: RoleCounters::default(),
        };
        assert_eq!(super::event(&event(finished)).as_deref(), Some("worker-3: error health_check_failed"));
        assert_eq!(super::event(&event(EventKind::NodeStarted { node: "worker-3".into() })), None);
        let halted = EventKind::Halted { reason: Halt::FailureBudget { failures: 2 } };
        assert_eq!(
            super::event(&event(halted)).as_deref(),
            Some("no new node will start: 2 failures passed the failure budget")
        );
        let task = EventKind::Task { task: TaskType::PreCheck, status: TaskStatus::Success, message: String::new() };
        assert_eq!(super::event(&event(task)).as_deref(), Some("PreCheck: Success"));
    }
}
