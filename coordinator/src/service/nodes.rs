//! What the service last saw of each node (read at PreCheck, after each
//! update, and periodically), and the fleet's versions as the cluster view
//! reports them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use upkeep_common::Version;
use upkeep_common::api::{NodePhase, NodeRole, NodeState};

use crate::inventory::Inventory;
use crate::status::NodeStatusRow;

/// One node as `GET /v1/clusters/{cluster}/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NodeView {
    /// The node.
    pub name: String,
    /// Control plane or worker.
    pub role: NodeRole,
    /// Its `pool` label.
    pub pool: Option<String>,
    /// Its `zone` label.
    pub zone: Option<String>,
    /// Its architecture, once read.
    pub arch: Option<String>,
    /// Each component's observed version.
    pub versions: BTreeMap<String, Option<Version>>,
    /// Idle, Upgrading or Degraded, once read.
    pub phase: Option<NodePhase>,
    /// Whether it is cordoned.
    pub cordoned: Option<bool>,
    /// Its last operation, from its history.
    pub last_operation: Option<String>,
    /// Why it could not be read, or how its last upgrade by this service failed.
    pub last_error: Option<String>,
    /// When it was last read.
    pub read_at: Option<DateTime<Utc>>,
}

impl NodeView {
    /// The nodes of an inventory, not yet read.
    pub fn unread(inventory: &Inventory) -> Vec<NodeView> {
        inventory
            .nodes
            .iter()
            .map(|node| NodeView {
                name: node.name.to_string(),
                role: node.role,
                pool: node.labels.get("pool").cloned(),
                zone: node.zone().map(str::to_owned),
                arch: None,
                versions: BTreeMap::new(),
                phase: None,
                cordoned: None,
                last_operation: None,
                last_error: None,
                read_at: None,
            })
            .collect()
    }

    /// Takes in a fresh read of the node.
    pub fn absorb(&mut self, row: &NodeStatusRow, now: DateTime<Utc>) {
        self.read_at = Some(now);
        match (&row.state, &row.unreadable) {
            (Some(state), _) => self.absorb_state(state),
            (None, Some(unreadable)) => self.last_error = Some(format!("{}: {}", unreadable.code, unreadable.message)),
            (None, None) => {}
        }
    }

    fn absorb_state(&mut self, state: &NodeState) {
        self.arch = Some(state.host.arch.clone()).filter(|arch| !arch.is_empty());
        self.versions = state.components.iter().map(|c| (c.name.to_string(), c.observed_version.clone())).collect();
        self.phase = Some(state.phase);
        self.cordoned = Some(state.cordoned);
        self.last_operation = state.history.last().map(|entry| entry.operation_id.to_string());
        self.last_error = None;
    }

    /// The node's Kubernetes version: kubelet's, or the one version all its
    /// components report; `None` when unread or mixed.
    pub fn kubernetes_version(&self) -> Option<&Version> {
        if let Some(kubelet) = self.versions.get("kubelet") {
            return kubelet.as_ref();
        }
        let mut versions = self.versions.values();
        let first = versions.next()?.as_ref()?;
        versions.all(|v| v.as_ref() == Some(first)).then_some(first)
    }
}

/// How many nodes report each version (`unknown` for unread or mixed nodes).
pub fn nodes_by_version(nodes: &[NodeView]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in nodes {
        let key = node.kubernetes_version().map_or_else(|| "unknown".to_owned(), ToString::to_string);
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The one version every node reports, or `None` while the fleet is mixed or
/// some node is unread.
pub fn observed_version(nodes: &[NodeView]) -> Option<Version> {
    let mut versions = nodes.iter().map(NodeView::kubernetes_version);
    let first = versions.next()??.clone();
    versions.all(|v| v == Some(&first)).then_some(first)
}

/// The oldest version any node reports, the one the incremental rule starts from.
pub fn oldest_version(nodes: &[NodeView]) -> Option<Version> {
    nodes.iter().filter_map(NodeView::kubernetes_version).min().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(versions: &[(&str, Option<&str>)]) -> NodeView {
        NodeView {
            name: "n".into(),
            role: NodeRole::Worker,
            pool: None,
            zone: None,
            arch: None,
            versions: versions.iter().map(|(c, v)| ((*c).to_owned(), v.map(|v| v.parse().expect("valid")))).collect(),
            phase: None,
            cordoned: None,
            last_operation: None,
            last_error: None,
            read_at: None,
        }
    }

    #[test]
    fn the_fleet_has_one_version_only_when_every_node_reports_it() {
        let at_31 = view(&[("kubelet", Some("v1.31.2")), ("kube-proxy", Some("v1.30.0"))]);
        let at_30 = view(&[("kubelet", Some("v1.30.5"))]);
        let unread = view(&[]);
        assert_eq!(observed_version(&[at_31.clone(), at_31.clone()]), Some("v1.31.2".parse().expect("valid")));
        assert_eq!(observed_version(&[at_31.clone(), at_30.clone()]), None, "mixed");
        assert_eq!(observed_version(&[at_31.clone(), unread.clone()]), None, "one node unread");
        assert_eq!(
            oldest_version(&[at_31.clone(), at_30.clone(), unread.clone()]),
            Some("v1.30.5".parse().expect("v"))
        );
        let counts = nodes_by_version(&[at_31, at_30.clone(), at_30, unread]);
        assert_eq!(counts.get("v1.30.5"), Some(&2));
        assert_eq!(counts.get("v1.31.2"), Some(&1));
        assert_eq!(counts.get("unknown"), Some(&1));
        let no_kubelet = view(&[("a", Some("v1.30.1")), ("b", Some("v1.30.2"))]);
        assert_eq!(no_kubelet.kubernetes_version(), None, "components disagree");
    }
}
