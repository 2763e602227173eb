//! Reading nodes outside their upgrade: before the rollout starts them (which
//! are unavailable already, which are at the target, and which answer so
//! wrongly that they fail before they start), and at the end of a soak.

use futures_util::stream::{self, StreamExt};
use upkeep_common::api::NodePhase;

use super::Rollout;
use super::answer::{Problem, at_target, check_name, counts_unavailable};
use super::node::NodeOutcome;
use crate::client::AgentClient;
use crate::plan::NodeStatus;

impl Rollout {
    /// Reads every pending node's state, `concurrency` at a time. A node that
    /// does not answer, or answers busy, counts as unavailable; a cordoned,
    /// Degraded or not Available one too; one already at the target is
    /// skipped. A node whose architecture is not yet known takes the one it
    /// reports (it picks the node's artifacts). A node whose agent answers
    /// with a permanent error or speaks for another node is returned as
    /// failed, without being started.
    pub(super) async fn observe_pending(&mut self) -> Vec<(usize, NodeOutcome)> {
        let pending: Vec<(usize, String)> = (0..self.journal.nodes.len())
            .filter(|&i| self.journal.nodes[i].status == NodeStatus::Pending)
            .map(|i| (i, self.addresses[i].clone()))
            .collect();
        let client = self.client.clone();
        // Each answer is used as it comes and dropped: a node's state is
        // kilobytes, and a fleet of 100,000 held at once would be half a gigabyte.
        let mut answers = stream::iter(pending)
            .map(|(index, address)| {
                let client = client.clone();
                async move { (index, client.node_then_close(&address).await) }
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        let mut refused = Vec::new();
        while let Some((index, state)) = answers.next().await {
            let name = &self.journal.nodes[index].name;
            match state {
                Ok(state) => {
                    if let Err(problem) = check_name(name, &self.addresses[index], &state) {
                        refused.push((index, NodeOutcome::failed(name, problem, true)));
                        continue;
                    }
                    let node = &mut self.journal.nodes[index];
                    node.unavailable = counts_unavailable(&state);
                    if node.arch.is_none() && !state.host.arch.is_empty() {
                        node.arch = Some(state.host.arch.clone());
                    }
                    if at_target(&state, self.journal.artifacts_for(index), &self.journal.target) {
                        self.journal.nodes[index].status = NodeStatus::Skipped;
                    }
                }
                Err(error) if error.is_transient() || error.is_busy() => self.journal.nodes[index].unavailable = true,
                Err(error) => refused.push((index, NodeOutcome::failed(name, Problem::of_call(&error), true))),
            }
        }
        refused.sort_by_key(|(index, _)| *index);
        refused
    }
}

/// Whether a node that soaked is still Ready (answers, and is Idle).
pub(super) async fn still_ready(client: &AgentClient, address: &str) -> bool {
    matches!(client.node_then_close(address).await, Ok(state) if state.phase == NodePhase::Idle)
}
