//! The etcd snapshot before the control plane is touched (DESIGN.md §6): asked
//! of the control-plane nodes' agents in inventory order until one with
//! `[etcd]` takes it, recorded in the journal before any control-plane node
//! starts. An agent with `[etcd]` that cannot take one stops the rollout
//! before any change, and so does a release that changes etcd itself when no
//! agent has `[etcd]`; with no `[etcd]` anywhere and etcd left alone (kept
//! outside the cluster's nodes), the rollout goes on without a snapshot.

use super::{Rollout, RolloutError};
use crate::journal::EtcdSnapshot;
use crate::plan::NodeStatus;

impl Rollout {
    /// Whether the rollout still has to change a control-plane node (an
    /// inventory of workers only never does, whatever the release holds).
    fn touches_control_plane(&self) -> bool {
        let control_plane = self.control_plane();
        let pending = control_plane
            .iter()
            .any(|&index| matches!(self.journal.nodes[index].status, NodeStatus::Pending | NodeStatus::InFlight));
        let static_pods_left = !self.journal.images.is_empty() && !self.journal.static_pods_done;
        !control_plane.is_empty() && (pending || static_pods_left)
    }

    /// Takes the etcd snapshot once, before the control plane is touched, and
    /// saves it in the journal; the snapshot taken, if any. Fails, changing
    /// nothing, when the release changes etcd and no agent could take one.
    pub async fn snapshot_etcd(&mut self) -> Result<Option<EtcdSnapshot>, RolloutError> {
        if self.journal.etcd_snapshot.is_some() || !self.touches_control_plane() {
            return Ok(self.journal.etcd_snapshot.clone());
        }
        let mut failures = Vec::new();
        for index in self.control_plane() {
            let (node, address) = (self.journal.nodes[index].name.clone(), self.address(index));
            match self.client.etcd_health(&address).await {
                Ok(None) => continue,
                Err(error) => {
                    failures.push(format!("{node}: {error}"));
                    continue;
                }
                Ok(Some(_)) => {}
            }
            match self.client.etcd_snapshot(&address).await {
                Ok(info) => {
                    tracing::info!(%node, name = %info.name, size = info.size, sha256 = %info.sha256, "etcd snapshot taken");
                    self.journal.etcd_snapshot = Some(EtcdSnapshot { node, info });
                    self.save().await?;
                    return Ok(self.journal.etcd_snapshot.clone());
                }
                Err(error) => failures.push(format!("{node}: {error}")),
            }
        }
        let changes_etcd = self.journal.images.iter().any(|image| image.component.as_str() == "etcd");
        if !failures.is_empty() {
            return Err(RolloutError::EtcdSnapshot(failures.join("; ")));
        }
        if changes_etcd {
            let reason = "the release changes etcd, and no control-plane agent has [etcd] to take a snapshot";
            return Err(RolloutError::EtcdSnapshot(reason.to_owned()));
        }
        tracing::warn!("no control-plane agent has [etcd]: the control plane is changed without an etcd snapshot");
        Ok(None)
    }
}
