//! The rollout journal: everything needed to resume a rollout after the
//! coordinator is killed, kept in a [`Store`]. The header (target, artifacts,
//! limits) is one key and each node another, so recording a change costs the
//! nodes that changed, not the whole fleet: every group of changes is one
//! atomic, durable batch, written before it is acted on. The one-shot CLI's
//! `--journal` is an embedded store file holding one rollout; the service keeps
//! each update's rollout under its own prefix of the service's store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use upkeep_common::Version;
use upkeep_common::api::{Artifact, ImageArtifact, SnapshotInfo};
use upkeep_common::ids::{NodeName, OperationId, RequestToken};

use crate::plan::{Limits, NodeStatus};
use crate::store::embedded::EmbeddedStore;
use crate::store::{Batch, Store, StoreError, get_json, json, scan_json};

/// An error of one node, as reported at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeError {
    /// The node.
    pub node: NodeName,
    /// The step that failed, if the agent named one.
    pub step: Option<String>,
    /// A stable code: the agent's detail code, or `unreachable`, `timeout`...
    pub code: String,
    /// What happened.
    pub message: String,
}

/// An etcd snapshot a control-plane node's agent took and keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdSnapshot {
    /// The node that keeps it.
    pub node: NodeName,
    /// Its file, size and sha256.
    pub info: SnapshotInfo,
}

/// One node's record in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalNode {
    /// The node.
    pub name: NodeName,
    /// Its progress.
    pub status: NodeStatus,
    /// The agent's operation, once started.
    pub operation: Option<OperationId>,
    /// Why it failed.
    pub error: Option<NodeError>,
    /// Whether it was seen unavailable.
    pub unavailable: bool,
    /// Its architecture, when known: it picks the node's artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// The whole journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The rollout's id: request tokens are `ROLLOUT_ID:NODE`.
    pub rollout_id: String,
    /// The target version.
    pub target: Version,
    /// The artifacts sent to every node whose architecture has none of its own.
    pub artifacts: Vec<Artifact>,
    /// The artifacts for each architecture, from a release catalog.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts_by_arch: BTreeMap<String, Vec<Artifact>>,
    /// The limits, resolved.
    pub limits: Limits,
    /// Whether nodes only stage first.
    pub prestage: bool,
    /// Whether the staging before any swap is done.
    #[serde(default)]
    pub prestaged: bool,
    /// The static pods' new images, for the control-plane nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageArtifact>,
    /// Whether every control-plane node's static pods are done.
    #[serde(default)]
    pub static_pods_done: bool,
    /// The etcd snapshot taken before the control plane was touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_snapshot: Option<EtcdSnapshot>,
    /// Nodes in inventory order; stored one key per node, not in the header.
    #[serde(skip)]
    pub nodes: Vec<JournalNode>,
    /// How many nodes the rollout has (the header's check on the node keys).
    #[serde(default)]
    pub node_count: usize,
    /// When the rollout started.
    pub started_at: DateTime<Utc>,
    /// When the header was last written.
    pub updated_at: DateTime<Utc>,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no rollout at this place.
    #[error("{0} holds no rollout journal")]
    Missing(String),
    /// The stored journal is not whole.
    #[error("the rollout journal at {place} is damaged: {reason}")]
    Damaged {
        /// Where it is.
        place: String,
        /// Why.
        reason: String,
    },
}

impl Journal {
    /// The artifacts node `index` installs: its architecture's, or the common ones.
    pub fn artifacts_for(&self, index: usize) -> &[Artifact] {
        let arch = self.nodes.get(index).and_then(|node| node.arch.as_ref());
        arch.and_then(|arch| self.artifacts_by_arch.get(arch)).unwrap_or(&self.artifacts)
    }

    /// The request token for a node's upgrade (or, with `stage`, its prestage):
    /// `ROLLOUT:NODE[:stage]`, or, when that is not a valid token (too long for
    /// one), `h-` and the sha256 of that text. Every request carries a token,
    /// and a resumed rollout derives the same one.
    pub fn token_for(&self, node: &NodeName, stage: bool) -> RequestToken {
        self.token_with(node, if stage { ":stage" } else { "" })
    }

    /// The request token for a control-plane node's static pods: `ROLLOUT:NODE:static-pods`.
    pub fn static_pods_token(&self, node: &NodeName) -> RequestToken {
        self.token_with(node, ":static-pods")
    }

    fn token_with(&self, node: &NodeName, suffix: &str) -> RequestToken {
        let text = format!("{}:{node}{suffix}", self.rollout_id);
        text.parse().unwrap_or_else(|_| {
            let hashed = format!("h-{}", hex::encode(Sha256::digest(text.as_bytes())));
            hashed.parse().expect("h- and 64 hexadecimal digits make a valid token")
        })
    }
}

/// Where one rollout's journal lives: a store and a key prefix.
#[derive(Clone)]
pub struct JournalStore {
    store: Arc<dyn Store>,
    prefix: String,
    /// How the place is named in errors.
    place: String,
}

/// The key prefix of the one rollout in a journal file.
const FILE_PREFIX: &str = "rollout/";

impl JournalStore {
    /// The journal under `prefix` (ending in `/`) of `store`.
    pub fn new(store: Arc<dyn Store>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self { store, place: prefix.clone(), prefix }
    }

    /// The one-shot CLI's journal: an embedded store file holding one rollout.
    pub fn open_file(path: &Path) -> Result<Self, JournalError> {
        let store = EmbeddedStore::open(path)?;
        Ok(Self { store: Arc::new(store), prefix: FILE_PREFIX.to_owned(), place: path.display().to_string() })
    }

    fn header_key(&self) -> String {
        format!("{}header", self.prefix)
    }

    fn node_key(&self, index: usize) -> String {
        format!("{}nodes/{index:08}", self.prefix)
    }

    /// Loads the journal: its header and every node.
    pub async fn load(&self) -> Result<Journal, JournalError> {
        let mut journal: Journal = get_json(self.store.as_ref(), &self.header_key())
            .await?
            .ok_or_else(|| JournalError::Missing(self.place.clone()))?;
        let nodes: Vec<(String, JournalNode)> =
            scan_json(self.store.as_ref(), &format!("{}nodes/", self.prefix)).await?;
        if nodes.len() != journal.node_count {
            return Err(JournalError::Damaged {
                place: self.place.clone(),
                reason: format!("the header counts {} nodes, the store holds {}", journal.node_count, nodes.len()),
            });
        }
        journal.nodes = nodes.into_iter().map(|(_, node)| node).collect();
        Ok(journal)
    }

    /// Writes the header and every node in one batch.
    pub async fn save(&self, journal: &mut Journal) -> Result<(), JournalError> {
        journal.updated_at = Utc::now();
        journal.node_count = journal.nodes.len();
        let mut batch = Batch::new();
        batch.put(self.header_key(), json(journal));
        for (index, node) in journal.nodes.iter().enumerate() {
            batch.put(self.node_key(index), json(node));
        }
        self.store.commit(batch).await?;
        Ok(())
    }

    /// Writes the current state of nodes `indexes` in one batch.
    pub async fn log_nodes(&self, journal: &Journal, indexes: &[usize]) -> Result<(), JournalError> {
        let mut batch = Batch::new();
        for &index in indexes {
            if let Some(node) = journal.nodes.get(index) {
                batch.put(self.node_key(index), json(node));
            }
        }
        self.store.commit(batch).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_journal() -> Journal {
        Journal {
            rollout_id: "r1".into(),
            target: "v1.30.3".parse().expect("valid"),
            artifacts: vec![],
            artifacts_by_arch: BTreeMap::new(),
            limits: Limits { max_unavailable: 1, max_failures: 0, per_zone: None, soak_ms: 0 },
            prestage: false,
            prestaged: false,
            images: Vec::new(),
            static_pods_done: false,
            etcd_snapshot: None,
            nodes: ["worker-1", "worker-2"]
                .into_iter()
                .map(|name| JournalNode {
                    name: name.parse().expect("valid"),
                    status: NodeStatus::Soaking { until_ms: 5 },
                    operation: None,
                    error: None,
                    unavailable: false,
                    arch: None,
                })
                .collect(),
            node_count: 0,
            started_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn saves_logs_and_loads_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rollout.redb");
        let journals = JournalStore::open_file(&path).expect("opens");
        assert!(matches!(journals.load().await, Err(JournalError::Missing(_))), "nothing saved yet");
        let mut journal = sample_journal();
        journals.save(&mut journal).await.expect("saves");
        assert_eq!(journals.load().await.expect("loads"), journal);
        journal.nodes[1].status = NodeStatus::Patched;
        journal.nodes[0].status = NodeStatus::Failed;
        journals.log_nodes(&journal, &[1]).await.expect("logs");
        drop(journals);

        let loaded = JournalStore::open_file(&path).expect("reopens").load().await.expect("loads");
        assert_eq!(loaded.nodes[1].status, NodeStatus::Patched, "the logged node");
        assert_eq!(loaded.nodes[0].status, NodeStatus::Soaking { until_ms: 5 }, "an unlogged change is not stored");
        assert_eq!(loaded.token_for(&loaded.nodes[0].name, false).as_str(), "r1:worker-1");
        assert_eq!(loaded.token_for(&loaded.nodes[0].name, true).as_str(), "r1:worker-1:stage");
    }

    #[tokio::test]
    async fn two_journals_share_a_store_under_their_prefixes_and_a_missing_node_is_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("opens"));
        let first = JournalStore::new(store.clone(), "updates/u1/");
        let second = JournalStore::new(store.clone(), "updates/u2/");
        let mut one = sample_journal();
        let mut two = Journal { rollout_id: "r2".into(), ..sample_journal() };
        two.nodes.truncate(1);
        first.save(&mut one).await.expect("saves");
        second.save(&mut two).await.expect("saves");
        assert_eq!(first.load().await.expect("loads").nodes.len(), 2);
        assert_eq!(second.load().await.expect("loads").rollout_id, "r2");
        let mut removal = Batch::new();
        removal.delete("updates/u1/nodes/00000001");
        store.commit(removal).await.expect("commits");
        assert!(matches!(first.load().await, Err(JournalError::Damaged { .. })));
    }

    #[test]
    fn a_node_name_too_long_for_a_token_still_gets_one_and_always_the_same() {
        let long: NodeName =
            format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63)).parse().expect("valid");
        let other: NodeName =
            format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "d".repeat(63)).parse().expect("valid");
        let journal = Journal { rollout_id: "rollout-20261201-0001".into(), ..sample_journal() };
        let token = journal.token_for(&long, false);
        assert!(token.as_str().starts_with("h-") && token.as_str().len() == 66, "{token}");
        assert_eq!(journal.token_for(&long, false), token, "derived again the same");
        assert_ne!(journal.token_for(&long, true), token, "the prestage has its own");
        assert_ne!(journal.token_for(&other, false), token, "another node has its own");
    }
}
