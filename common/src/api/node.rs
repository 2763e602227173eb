//! The node's state as `GET /v1/node` reports it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::operation::AcceptedRisk;
use crate::ids::{ComponentName, NodeName, OperationId};
use crate::version::Version;

/// Whether the node runs the control plane or only workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// Runs kube-apiserver and friends.
    ControlPlane,
    /// Runs workloads only.
    Worker,
}

/// The node's phase as upkeep sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodePhase {
    /// No operation is running and the node is healthy.
    Idle,
    /// An operation is running.
    Upgrading,
    /// A failure left the node needing attention; see the Degraded condition.
    Degraded,
}

/// The kinds of condition the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// Every managed component answers its version command.
    Available,
    /// An operation is running.
    Progressing,
    /// A failure needs attention (a rollback happened, or a binary is unknown).
    Degraded,
}

/// A condition's status, as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The agent cannot tell.
    Unknown,
}

/// One condition, in the Kubernetes shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Which condition.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A CamelCase reason code.
    pub reason: String,
    /// A sentence for a person.
    pub message: String,
    /// When the status last changed.
    #[serde(rename = "lastTransitionTime")]
    #[serde(serialize_with = "crate::api::timestamp::serialize")]
    pub last_transition_time: DateTime<Utc>,
}

impl Condition {
    /// Sets the condition of `kind` in `conditions`: the transition time moves
    /// only when the status changes, as in Kubernetes.
    pub fn set(
        conditions: &mut Vec<Condition>,
        kind: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: DateTime<Utc>,
    ) {
        match conditions.iter_mut().find(|condition| condition.kind == kind) {
            Some(condition) => {
                if condition.status != status {
                    condition.last_transition_time = now;
                }
                condition.status = status;
                reason.clone_into(&mut condition.reason);
                message.clone_into(&mut condition.message);
            }
            None => conditions.push(Condition {
                kind,
                status,
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
            }),
        }
    }
}

/// One managed component's versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    /// The component's name, such as `kubelet`.
    pub name: ComponentName,
    /// What its version command printed last, if it printed a version.
    pub observed_version: Option<Version>,
    /// The version an operation is installing, if one is.
    pub desired_version: Option<Version>,
    /// When the version command last ran.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub observed_at: Option<DateTime<Utc>>,
    /// Why the version command gave no version, if it did not.
    pub probe_error: Option<String>,
}

/// How an upgrade ended, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HistoryState {
    /// Every component reached the target.
    Completed,
    /// Some components reached the target and others did not.
    Partial,
    /// The operation was undone; the previous binaries are back.
    RolledBack,
}

/// One past version change on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The operation that made the change.
    pub operation_id: OperationId,
    /// The version it moved to (or tried to).
    pub version: Version,
    /// The version before it.
    pub from_version: Option<Version>,
    /// How it ended.
    pub state: HistoryState,
    /// When it started.
    #[serde(serialize_with = "crate::api::timestamp::serialize")]
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(serialize_with = "crate::api::timestamp::serialize_option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Whether a trusted signature was checked for every artifact (a sha256
    /// match alone does not make an upgrade verified; a rollback never is).
    pub verified: bool,
    /// What `force` overrode.
    #[serde(default)]
    pub accepted_risks: Vec<AcceptedRisk>,
}

/// The system load averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Over one minute.
    pub one: f64,
    /// Over five minutes.
    pub five: f64,
    /// Over fifteen minutes.
    pub fifteen: f64,
}

/// Facts about the host the agent runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Operating system name and version, such as `Debian GNU/Linux 12`.
    pub os: String,
    /// The machine architecture as Kubernetes names it (`amd64`, `arm64`...);
    /// empty from an agent that does not report it.
    #[serde(default)]
    pub arch: String,
    /// Kernel version.
    pub kernel: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Total memory in bytes.
    pub memory_total_bytes: u64,
    /// Available memory in bytes.
    pub memory_available_bytes: u64,
    /// The filesystem where binaries are staged.
    pub disk_path: String,
    /// Free bytes on that filesystem, if the agent could read it.
    pub disk_free_bytes: Option<u64>,
    /// Seconds since boot.
    pub uptime_seconds: u64,
    /// Load averages.
    pub load: LoadAverage,
}

/// The architecture of this build as Kubernetes names it (`GOARCH`): `amd64`
/// for `x86_64`, `arm64` for `aarch64`, and Rust's name for the others.
pub fn kubernetes_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}

/// The node's whole state: the body of `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// The Kubernetes node name.
    pub name: NodeName,
    /// Control plane or worker.
    pub role: NodeRole,
    /// Idle, Upgrading or Degraded.
    pub phase: NodePhase,
    /// Whether the node is unschedulable.
    pub cordoned: bool,
    /// Each managed component's versions.
    pub components: Vec<ComponentState>,
    /// Available, Progressing and Degraded.
    pub conditions: Vec<Condition>,
    /// The operation running now, if any.
    pub current_operation: Option<OperationId>,
    /// Past version changes, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Facts about the host.
    pub host: HostFacts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> NodeState {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid time");
        NodeState {
            name: "worker-1".parse().expect("valid"),
            role: NodeRole::ControlPlane,
            phase: NodePhase::Idle,
            cordoned: false,
            components: vec![ComponentState {
                name: "kubelet".parse().expect("valid"),
                observed_version: Some("v1.30.2".parse().expect("valid")),
                desired_version: None,
                observed_at: Some(at),
                probe_error: None,
            }],
            conditions: vec![Condition {
                kind: ConditionType::Available,
                status: ConditionStatus::True,
                reason: "ComponentsAnswer".into(),
                message: "all components report a version".into(),
                last_transition_time: at,
            }],
            current_operation: None,
            history: vec![],
            host: HostFacts {
                arch: "amd64".into(),
                os: "Debian GNU/Linux 12".into(),
                kernel: "6.1.0".into(),
                cpus: 2,
                memory_total_bytes: 1,
                memory_available_bytes: 1,
                disk_path: "/usr/bin".into(),
                disk_free_bytes: Some(1),
                uptime_seconds: 1,
                load: LoadAverage { one: 0.5, five: 0.25, fifteen: 0.0 },
            },
        }
    }

    #[test]
    fn json_field_names_are_fixed() {
        let json = serde_json::to_value(sample()).expect("serializes");
        let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["components", "conditions", "cordoned", "current_operation", "history", "host", "name", "phase", "role"]
        );
        assert_eq!(json["role"], "control-plane");
        assert_eq!(json["phase"], "Idle");
        assert_eq!(
            json["components"][0],
            serde_json::json!({"name": "kubelet", "observed_version": "v1.30.2", "desired_version": null,
                "observed_at": "2026-01-02T03:04:05Z", "probe_error": null})
        );
        assert_eq!(
            json["conditions"][0],
            serde_json::json!({"type": "Available", "status": "True", "reason": "ComponentsAnswer",
                "message": "all components report a version", "lastTransitionTime": "2026-01-02T03:04:05Z"})
        );
        let host: Vec<&str> = json["host"].as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            host,
            [
                "arch",
                "cpus",
                "disk_free_bytes",
                "disk_path",
                "kernel",
                "load",
                "memory_available_bytes",
                "memory_total_bytes",
                "os",
                "uptime_seconds"
            ]
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid time");
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).single().expect("valid time");
        let t2 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 2, 0).single().expect("valid time");
        let mut conditions = Vec::new();
        Condition::set(&mut conditions, ConditionType::Degraded, ConditionStatus::False, "Healthy", "ok", t0);
        Condition::set(&mut conditions, ConditionType::Degraded, ConditionStatus::False, "StillHealthy", "ok", t1);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, t0);
        assert_eq!(conditions[0].reason, "StillHealthy");
        Condition::set(&mut conditions, ConditionType::Degraded, ConditionStatus::True, "RolledBack", "bad", t2);
        assert_eq!(conditions[0].last_transition_time, t2);
    }

    #[test]
    fn round_trips() {
        let state = sample();
        let back: NodeState = serde_json::from_value(serde_json::to_value(&state).expect("ser")).expect("de");
        assert_eq!(back, state);
    }

    #[test]
    fn history_entry_field_names_are_fixed() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid time");
        let entry = HistoryEntry {
            operation_id: "op-1".parse().expect("valid"),
            version: "v1.31.0".parse().expect("valid"),
            from_version: Some("v1.30.2".parse().expect("valid")),
            state: HistoryState::RolledBack,
            started_at: at,
            completed_at: None,
            verified: true,
            accepted_risks: vec![],
        };
        assert_eq!(
            serde_json::to_value(entry).expect("ser"),
            serde_json::json!({"operation_id": "op-1", "version": "v1.31.0", "from_version": "v1.30.2",
                "state": "RolledBack", "started_at": "2026-01-02T03:04:05Z", "completed_at": null,
                "verified": true, "accepted_risks": []})
        );
    }
}
