//! Driving a rollout: asks the planner what to start, upgrades those nodes
//! through their agents, records every change in the journal before acting on
//! it, and reports events. Request tokens are derived from the rollout id and
//! the node, so a retry or a resume never upgrades a node twice: the agent
//! answers a repeated token with the operation it already ran.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures_util::stream::{self, StreamExt};
use upkeep_common::api::{NodeRole, UpgradeRequest};

use crate::client::AgentClient;
use crate::control::ControlSource;
use crate::journal::{Journal, JournalStore};
use crate::plan::{NodeStatus, PlanNode};
use crate::report::{Counters, Event, EventSink, Summary};

mod answer;
mod control_plane;
mod drive;
pub(crate) mod node;
mod observe;
mod open;
mod settings;
mod snapshot;

use answer::Problem;
use node::{NodeJob, NodeOutcome};
pub use settings::{
    CONTROL_INTERVAL, DriverSettings, JOURNAL_FLUSH_INTERVAL, NODE_TIMEOUT_RANGE, PLAN_INTERVAL, RolloutError,
    RolloutSpec,
};

/// Where a rollout keeps its journal and reads its operator's pause or abort.
#[derive(Clone)]
pub struct RolloutStorage {
    /// The journal.
    pub journal: JournalStore,
    /// The pause or abort.
    pub control: ControlSource,
}

impl RolloutStorage {
    /// The one-shot CLI's: the journal file (an embedded store) and the
    /// control file beside it.
    pub fn file(path: &std::path::Path) -> Result<Self, RolloutError> {
        Ok(Self { journal: JournalStore::open_file(path)?, control: ControlSource::File(path.to_owned()) })
    }
}

/// A rollout in progress.
pub struct Rollout {
    client: AgentClient,
    storage: RolloutStorage,
    journal: Journal,
    settings: DriverSettings,
    stop: Arc<AtomicBool>,
    /// Nodes changed since the journal last recorded them.
    unlogged: Vec<usize>,
    /// Nodes changed since the planner's view last copied them.
    unplanned: Vec<usize>,
    /// Each journal node's address, from the inventory.
    addresses: Vec<String>,
    /// What the planner sees of each node: role and zone from the inventory,
    /// progress copied from the journal before each decision.
    plan_view: Vec<PlanNode>,
    /// The journal's counters, kept up to date as nodes finish (counting the
    /// whole journal for every event would be quadratic in the fleet).
    counters: Counters,
}

impl Rollout {
    /// A flag that, once set (by a signal handler), stops new nodes from
    /// starting; running ones get [`DriverSettings::stop_timeout`] to finish.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The rollout's id.
    pub fn id(&self) -> &str {
        &self.journal.rollout_id
    }

    fn address(&self, index: usize) -> String {
        self.addresses[index].clone()
    }

    /// The control-plane nodes, in inventory order.
    fn control_plane(&self) -> Vec<usize> {
        (0..self.journal.nodes.len()).filter(|&index| self.plan_view[index].role == NodeRole::ControlPlane).collect()
    }

    async fn save(&mut self) -> Result<(), RolloutError> {
        self.unlogged.clear();
        self.storage.journal.save(&mut self.journal).await.map_err(RolloutError::from)
    }

    /// Writes every node changed since the last write to the journal, in one batch.
    async fn log_changes(&mut self) -> Result<(), RolloutError> {
        let changed = std::mem::take(&mut self.unlogged);
        self.storage.journal.log_nodes(&self.journal, &changed).await.map_err(RolloutError::from)
    }

    /// Runs the rollout to its end (or until stopped), reporting to `sink`.
    pub async fn run(&mut self, sink: &mut dyn EventSink) -> Result<Summary, RolloutError> {
        self.save().await?;
        sink.event(&Event::Started {
            rollout_id: self.journal.rollout_id.clone(),
            target: self.journal.target.to_string(),
            nodes: self.journal.nodes.len(),
        });
        let refused = self.observe_pending().await;
        self.counters = Counters::of(&self.journal);
        for (index, outcome) in refused {
            self.finish_node(index, outcome, 0, true, sink).await?;
        }
        self.save().await?;
        if self.journal.prestage && !self.journal.prestaged {
            self.prestage(sink).await?;
        }
        self.snapshot_etcd().await?;
        self.upgrade_static_pods(sink).await?;
        let halt = self.drive(sink).await?;
        self.save().await?;
        let summary = Summary {
            counters: Counters::of(&self.journal),
            errors: self.journal.nodes.iter().filter_map(|n| n.error.clone()).collect(),
            halt,
        };
        sink.event(&Event::Summary {
            counters: summary.counters,
            errors: summary.errors.clone(),
            halt: summary.halt.clone(),
        });
        Ok(summary)
    }

    /// What the end of a node's soak means: patched when it is still Ready.
    fn soak_outcome(&self, index: usize, ready: bool) -> NodeOutcome {
        if ready {
            return NodeOutcome::Patched;
        }
        let problem = Problem::new("soak_failed", "the node did not stay Ready while it soaked".to_owned());
        NodeOutcome::failed(&self.journal.nodes[index].name, problem, true)
    }

    /// Records how a node ended, saves the journal, then reports it.
    async fn finish_node(
        &mut self,
        index: usize,
        outcome: NodeOutcome,
        now_ms: u64,
        soak_over: bool,
        sink: &mut dyn EventSink,
    ) -> Result<(), RolloutError> {
        let event = self.record_outcome(index, outcome, now_ms, soak_over);
        self.log_changes().await?;
        if let Some(event) = event {
            sink.event(&event);
        }
        Ok(())
    }

    /// Records how a node ended in the journal (not yet saved); returns the event to report.
    fn record_outcome(&mut self, index: usize, outcome: NodeOutcome, now_ms: u64, soak_over: bool) -> Option<Event> {
        self.changed(index);
        let soak_ms = self.journal.limits.soak_ms;
        let node = &mut self.journal.nodes[index];
        let before = node.status;
        match &outcome {
            NodeOutcome::Patched if !soak_over && soak_ms > 0 => {
                node.status = NodeStatus::Soaking { until_ms: now_ms.saturating_add(soak_ms) };
                return None;
            }
            NodeOutcome::Patched => node.status = NodeStatus::Patched,
            NodeOutcome::Skipped => node.status = NodeStatus::Skipped,
            NodeOutcome::Failed { error, unavailable } => {
                node.status = NodeStatus::Failed;
                node.error = Some(error.clone());
                node.unavailable = *unavailable;
            }
        }
        let label = outcome.label();
        let name = node.name.to_string();
        let error = node.error.clone();
        self.counters.moved(before, node.status);
        Some(Event::NodeFinished { node: name, outcome: label.to_owned(), error, counters: self.counters })
    }

    fn request(&self, index: usize, stage_only: bool) -> UpgradeRequest {
        let node = &self.journal.nodes[index].name;
        UpgradeRequest {
            target_version: self.journal.target.clone(),
            artifacts: self.journal.artifacts_for(index).to_vec(),
            images: Vec::new(),
            request_token: Some(self.journal.token_for(node, stage_only)),
            force: false,
            drain: self.settings.drain.clone(),
            dry_run: false,
            stage_only,
            control_plane_version: None,
        }
    }

    fn job(&self, index: usize, stage_only: bool) -> NodeJob {
        self.job_for(index, self.request(index, stage_only))
    }

    /// Node `index`'s job sending `request`.
    fn job_for(&self, index: usize, request: UpgradeRequest) -> NodeJob {
        NodeJob {
            client: self.client.clone(),
            address: self.address(index),
            name: self.journal.nodes[index].name.clone(),
            request,
            poll_interval: self.settings.poll_interval,
            node_timeout: self.settings.node_timeout,
        }
    }

    /// Stages the artifacts on every pending node, a bounded number at once,
    /// and records that it is done (a node that fails is counted in error);
    /// [`Rollout::run`] then goes straight to the upgrades.
    pub async fn stage_everywhere(&mut self, sink: &mut dyn EventSink) -> Result<(), RolloutError> {
        self.prestage(sink).await
    }

    async fn prestage(&mut self, sink: &mut dyn EventSink) -> Result<(), RolloutError> {
        let jobs: Vec<(usize, NodeJob)> = (0..self.journal.nodes.len())
            .filter(|&i| self.journal.nodes[i].status == NodeStatus::Pending)
            .map(|i| (i, self.job(i, true)))
            .collect();
        let results: Vec<(usize, NodeOutcome)> = stream::iter(jobs)
            .map(|(index, job)| async move { (index, job.run().await) })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (index, outcome) in results {
            if let NodeOutcome::Failed { .. } = outcome {
                self.finish_node(index, outcome, 0, true, sink).await?;
            }
        }
        self.journal.prestaged = true;
        self.save().await
    }
}
