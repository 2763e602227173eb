//! Bodies of the agent's etcd routes: `POST /v1/etcd/snapshot` and `GET /v1/etcd/health`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::Sha256;

/// The body of `POST /v1/etcd/snapshot`: an empty object (or no body at all).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {}

/// One etcd snapshot the agent took and kept on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInfo {
    /// The file's name, `etcd-snapshot-<UTC time>.db`.
    pub name: String,
    /// The file's absolute path on the node.
    pub path: String,
    /// The file's size in bytes (etcd's data and its trailing 32-byte sha256).
    pub size: u64,
    /// The sha256 of the whole file.
    pub sha256: Sha256,
    /// When the snapshot was asked of etcd.
    #[serde(serialize_with = "crate::api::timestamp::serialize")]
    pub taken_at: DateTime<Utc>,
    /// The endpoint that served it.
    pub endpoint: String,
}

/// What etcd says of its own health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdHealth {
    /// Whether an endpoint answered healthy (a leader and a quorum).
    pub healthy: bool,
    /// The endpoint whose answer this is.
    pub endpoint: String,
    /// What etcd answered, or why no endpoint said healthy.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_contract() {
        let info = SnapshotInfo {
            name: "etcd-snapshot-20261201T091115.123Z.db".to_owned(),
            path: "/var/lib/upkeep/etcd-snapshots/etcd-snapshot-20261201T091115.123Z.db".to_owned(),
            size: 32_800,
            sha256: "ab".repeat(32).parse().expect("digest"),
            taken_at: DateTime::parse_from_rfc3339("2026-12-01T09:11:15.123Z").expect("time").with_timezone(&Utc),
            endpoint: "https://127.0.0.1:2379".to_owned(),
        };
        let json = serde_json::to_value(&info).expect("serializes");
        let mut keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["endpoint", "name", "path", "sha256", "size", "taken_at"]);
        assert_eq!(json["taken_at"], "2026-12-01T09:11:15.123Z");
        let health = serde_json::to_value(EtcdHealth {
            healthy: true,
            endpoint: "https://127.0.0.1:2379".to_owned(),
            message: String::new(),
        })
        .expect("serializes");
        assert_eq!(health["healthy"], true);
        assert!(serde_json::from_str::<SnapshotRequest>("{}").is_ok());
        assert!(serde_json::from_str::<SnapshotRequest>("{\"dir\": \"/\"}").is_err(), "unknown fields are refused");
    }
}
