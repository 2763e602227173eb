//! Driving a rollout: asks the planner what to start, upgrades those nodes
//! through their agents, records every change in the journal before acting on
//! it, and reports events. Request tokens are derived from the rollout id and
//! the node, so a retry or a resume never upgrades a node twice: the agent
//! answers a repeated token with the operation it already ran.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::task::JoinSet;
use upkeep_common::api::{NodeRole, UpgradeRequest};

use crate::client::AgentClient;
use crate::control::{Control, ControlSource};
use crate::journal::{Journal, JournalStore};
use crate::plan::{Halt, NodeStatus, PlanNode, plan};
use crate::report::{Counters, Event, EventSink, Summary};

mod answer;
mod control_plane;
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

    /// Starts nodes as the planner allows and records them as they finish,
    /// until the plan is complete or a stop's wait ends; returns why nodes
    /// stopped starting, if they did.
    async fn drive(&mut self, sink: &mut dyn EventSink) -> Result<Option<Halt>, RolloutError> {
        let clock = Instant::now();
        let mut tasks: JoinSet<(usize, Finished)> = JoinSet::new();
        let mut soak_checks: HashSet<usize> = HashSet::new();
        for index in 0..self.journal.nodes.len() {
            if self.journal.nodes[index].status == NodeStatus::InFlight {
                self.spawn_upgrade(&mut tasks, index);
            }
        }
        let mut reported_halt = None;
        let mut last_flush = Instant::now();
        let mut stop_since: Option<Instant> = None;
        let mut last_plan;
        let mut control = self.storage.control.read();
        let mut control_read = Instant::now();
        loop {
            let signalled = self.stop.load(Ordering::Relaxed);
            if signalled && stop_since.is_none() {
                stop_since = Some(Instant::now());
            }
            if control_read.elapsed() >= CONTROL_INTERVAL {
                control = self.storage.control.read();
                control_read = Instant::now();
            }
            let stopped = signalled || control != Control::Run;
            let now_ms = millis_since(clock);
            last_plan = Instant::now();
            self.refresh_plan_view();
            let decision = plan(&self.plan_view, &self.journal.limits, stopped, now_ms);
            for &index in &decision.end_soak {
                if soak_checks.insert(index) {
                    let (client, address) = (self.client.clone(), self.address(index));
                    tasks.spawn(async move {
                        (index, Finished::Soak { ready: observe::still_ready(&client, &address).await })
                    });
                }
            }
            if !decision.start.is_empty() {
                for &index in &decision.start {
                    self.journal.nodes[index].status = NodeStatus::InFlight;
                    self.unlogged.push(index);
                }
                // Logged before any request goes out, so a resume knows every node it may have started.
                self.log_changes().await?;
                last_flush = Instant::now();
                for &index in &decision.start {
                    self.spawn_upgrade(&mut tasks, index);
                    sink.event(&Event::NodeStarted {
                        node: self.journal.nodes[index].name.to_string(),
                        operation: None,
                    });
                }
            }
            if decision.halt != reported_halt {
                if let Some(reason) = &decision.halt {
                    sink.event(&Event::Halted { reason: reason.clone() });
                }
                reported_halt = decision.halt.clone();
            }
            if decision.complete {
                break;
            }
            if stop_since.is_some_and(|since| since.elapsed() >= self.settings.stop_timeout) {
                tasks.abort_all();
                let running = self.journal.nodes.iter().filter(|n| n.status.is_active()).count();
                let reason = Halt::StopWaitEnded { running };
                sink.event(&Event::Halted { reason: reason.clone() });
                reported_halt = Some(reason);
                break;
            }
            tokio::select! {
                finished = tasks.join_next(), if !tasks.is_empty() => {
                    self.absorb(finished, &mut tasks, &mut soak_checks, clock, sink);
                    // Nodes finish in bursts: gather a few milliseconds of them into one decision.
                    if let Some(rest) = PLAN_INTERVAL.checked_sub(last_plan.elapsed()) {
                        tokio::time::sleep(rest).await;
                        let more = tasks.try_join_next();
                        self.absorb(more, &mut tasks, &mut soak_checks, clock, sink);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if !self.unlogged.is_empty() && last_flush.elapsed() >= JOURNAL_FLUSH_INTERVAL {
                self.log_changes().await?;
                last_flush = Instant::now();
            }
        }
        Ok(reported_halt)
    }

    /// Records the driver tasks that ended, `first` and every other one
    /// already done, and reports each.
    fn absorb(
        &mut self,
        first: Option<Result<(usize, Finished), tokio::task::JoinError>>,
        tasks: &mut JoinSet<(usize, Finished)>,
        soak_checks: &mut HashSet<usize>,
        clock: Instant,
        sink: &mut dyn EventSink,
    ) {
        let now_ms = millis_since(clock);
        let mut next = first;
        while let Some(result) = next {
            if let Ok((index, finished)) = result {
                let (outcome, soak_over) = match finished {
                    Finished::Upgrade(outcome) => (outcome, false),
                    Finished::Soak { ready } => {
                        soak_checks.remove(&index);
                        (self.soak_outcome(index, ready), true)
                    }
                };
                if let Some(event) = self.record_outcome(index, outcome, now_ms, soak_over) {
                    sink.event(&event);
                }
            }
            next = tasks.try_join_next();
        }
    }

    /// Copies each node's progress from the journal into the planner's view.
    fn refresh_plan_view(&mut self) {
        for (view, node) in self.plan_view.iter_mut().zip(&self.journal.nodes) {
            view.status = node.status;
            view.unavailable = node.unavailable;
        }
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
        self.unlogged.push(index);
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

    fn spawn_upgrade(&self, tasks: &mut JoinSet<(usize, Finished)>, index: usize) {
        let job = self.job(index, false);
        tasks.spawn(async move { (index, Finished::Upgrade(job.run().await)) });
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

/// What a driver task reports.
enum Finished {
    /// A node's upgrade ended.
    Upgrade(NodeOutcome),
    /// A node's soak ended; whether it was still Ready.
    Soak { ready: bool },
}

fn millis_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}
