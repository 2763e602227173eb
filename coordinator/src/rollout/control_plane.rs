//! The control plane's static pods before any kubelet (DESIGN.md §6, kubelet
//! skew): every control-plane node's static pods, node after node, each
//! node's agent swapping them one at a time and checking each before the
//! next; only then does [`Rollout::drive`] start the control-plane kubelets,
//! then the workers. A node whose static pods fail fails the rollout's
//! control plane, so no kubelet starts.

use upkeep_common::api::{ImageArtifact, UpgradeRequest};

use super::answer::Problem;
use super::node::{NodeJob, NodeOutcome};
use super::{Rollout, RolloutError};
use crate::plan::NodeStatus;
use crate::report::{Event, EventSink};
use upkeep_common::api::NodeRole;

impl Rollout {
    /// Upgrades every control-plane node's static pods, node after node,
    /// unless the release has no images or this was done before a resume.
    /// Stops at the first node that fails (recorded as failed).
    pub(super) async fn upgrade_static_pods(&mut self, sink: &mut dyn EventSink) -> Result<(), RolloutError> {
        if self.journal.images.is_empty() || self.journal.static_pods_done {
            return Ok(());
        }
        let control_plane: Vec<usize> = (0..self.journal.nodes.len())
            .filter(|&index| self.plan_view[index].role == NodeRole::ControlPlane)
            .filter(|&index| self.journal.nodes[index].status != NodeStatus::Failed)
            .collect();
        for index in control_plane {
            let node = self.journal.nodes[index].name.to_string();
            let outcome = self.static_pods_on(index).await;
            let label = match &outcome {
                NodeOutcome::Patched => "patched",
                NodeOutcome::Skipped => "skipped",
                NodeOutcome::Failed { .. } => "error",
            };
            sink.event(&Event::StaticPodsFinished { node, outcome: label.to_owned() });
            if let NodeOutcome::Failed { .. } = outcome {
                return self.finish_node(index, outcome, 0, true, sink).await;
            }
        }
        self.journal.static_pods_done = true;
        self.save().await
    }

    /// One control-plane node's static pods: the release's images of the
    /// components its agent manages.
    async fn static_pods_on(&self, index: usize) -> NodeOutcome {
        let (name, address) = (&self.journal.nodes[index].name, self.address(index));
        let state = match self.client.node(&address).await {
            Ok(state) => state,
            Err(error) => return NodeOutcome::failed(name, Problem::of_call(&error), error.is_transient()),
        };
        let images: Vec<ImageArtifact> = self
            .journal
            .images
            .iter()
            .filter(|image| state.components.iter().any(|component| component.name == image.component))
            .cloned()
            .collect();
        if images.is_empty() {
            return NodeOutcome::Skipped;
        }
        let request = UpgradeRequest {
            target_version: self.journal.target.clone(),
            artifacts: Vec::new(),
            images,
            request_token: Some(self.journal.static_pods_token(name)),
            force: false,
            drain: None,
            dry_run: false,
            stage_only: false,
            control_plane_version: None,
        };
        let job = NodeJob {
            client: self.client.clone(),
            address,
            name: name.clone(),
            request,
            poll_interval: self.settings.poll_interval,
            node_timeout: self.settings.node_timeout,
        };
        job.run().await
    }
}
