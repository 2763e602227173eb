//! The control plane's static pods before any kubelet (DESIGN.md §6, kubelet
//! skew): every control-plane node's static pods, node after node, each
//! node's agent swapping them one at a time and checking each before the
//! next; only then does [`Rollout::drive`] start the control-plane kubelets,
//! then the workers. After each node the control plane must be healthy again
//! before the next: every control-plane agent reports its static pods running
//! and answering (every API server answers), and etcd reports a leader and a
//! quorum. A node whose static pods fail, or after which the control plane
//! does not become healthy in the node's time, fails the rollout's control
//! plane, so no kubelet starts.

use std::time::Duration;

use tokio::time::Instant;
use upkeep_common::api::{ImageArtifact, UpgradeRequest};

use super::answer::Problem;
use super::node::{NodeOutcome, far_future};
use super::{Rollout, RolloutError};
use crate::control::Control;
use crate::plan::NodeStatus;
use crate::report::{Event, EventSink};

/// How often the control plane's health is asked again while it is not healthy.
const HEALTH_POLL: Duration = Duration::from_millis(500);

impl Rollout {
    /// Upgrades every control-plane node's static pods, node after node,
    /// unless the release has no images or this was done before a resume.
    /// Stops at the first node that fails (recorded as failed).
    pub(super) async fn upgrade_static_pods(&mut self, sink: &mut dyn EventSink) -> Result<(), RolloutError> {
        if self.journal.images.is_empty() || self.journal.static_pods_done {
            return Ok(());
        }
        let control_plane = self.control_plane();
        for index in control_plane.into_iter().filter(|&index| self.journal.nodes[index].status != NodeStatus::Failed) {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) || self.storage.control.read() != Control::Run {
                // Paused, aborted or stopped: no further node starts; a resume goes on from here.
                return Ok(());
            }
            let node = self.journal.nodes[index].name.to_string();
            let outcome = self.static_pods_on(index).await;
            sink.event(&Event::StaticPodsFinished { node, outcome: outcome.label().to_owned() });
            if let NodeOutcome::Failed { .. } = outcome {
                return self.finish_node(index, outcome, 0, true, sink).await;
            }
            if let Err(problem) = self.wait_for_healthy_control_plane().await {
                let name = self.journal.nodes[index].name.clone();
                return self.finish_node(index, NodeOutcome::failed(&name, problem, true), 0, true, sink).await;
            }
        }
        self.journal.static_pods_done = true;
        self.save().await
    }

    /// Waits, within the node timeout, until every control-plane agent reports
    /// its static pods healthy and etcd (where an agent has `[etcd]`) a quorum;
    /// the last problem seen when it does not.
    async fn wait_for_healthy_control_plane(&self) -> Result<(), Problem> {
        let deadline = Instant::now().checked_add(self.settings.node_timeout).unwrap_or_else(far_future);
        loop {
            let problem = match self.control_plane_problem().await {
                None => return Ok(()),
                Some(problem) => problem,
            };
            if Instant::now() + HEALTH_POLL >= deadline {
                return Err(Problem::new("control_plane_unhealthy", problem));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Why the control plane is not healthy now, if it is not.
    async fn control_plane_problem(&self) -> Option<String> {
        let mut etcd_healthy = None;
        for index in self.control_plane() {
            let (node, address) = (&self.journal.nodes[index].name, self.address(index));
            match self.client.static_pods(&address).await {
                Ok(list) => {
                    if let Some(pod) = list.static_pods.iter().find(|pod| !pod.healthy) {
                        return Some(format!("{node}: {}: {}", pod.component, pod.message));
                    }
                }
                Err(error) => return Some(format!("{node}: {error}")),
            }
            if etcd_healthy != Some(true) {
                match self.client.etcd_health(&address).await {
                    Ok(Some(health)) if health.healthy => etcd_healthy = Some(true),
                    Ok(Some(health)) => return Some(format!("{node}: etcd is not healthy: {}", health.message)),
                    Ok(None) => {}
                    Err(error) => return Some(format!("{node}: etcd: {error}")),
                }
            }
        }
        None
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
            artifacts: Vec::new(),
            images,
            request_token: Some(self.journal.static_pods_token(name)),
            drain: None,
            ..self.request(index, false)
        };
        self.job_for(index, request).run().await
    }
}
