//! Driving a rollout: asks the planner what to start, upgrades those nodes
//! through their agents, records every change in the journal before acting on
//! it, and reports events. Request tokens are derived from the rollout id and
//! the node, so a retry or a resume never upgrades a node twice: the agent
//! answers a repeated token with the operation it already ran.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use tokio::task::JoinSet;
use upkeep_common::Version;
use upkeep_common::api::{Artifact, DrainOptions, NodePhase, NodeState, Operation, OperationPhase, UpgradeRequest};
use upkeep_common::ids::{NodeName, OperationId};

use crate::client::{AgentClient, ClientError};
use crate::inventory::Inventory;
use crate::journal::{Control, Journal, JournalError, JournalNode, NodeError, read_control};
use crate::plan::{Limit, Limits, NodeStatus, PlanNode, plan};
use crate::report::{Counters, Event, EventSink, Summary};

/// How a rollout is asked for.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    /// The target version.
    pub target: Version,
    /// The artifacts every node installs.
    pub artifacts: Vec<Artifact>,
    /// Nodes that may be unavailable at once.
    pub max_unavailable: Limit,
    /// Failures tolerated before no new node starts.
    pub max_failures: Limit,
    /// Nodes of one zone in flight at once.
    pub per_zone: Option<usize>,
    /// How long a patched node must stay Ready before its slot is reused.
    pub soak: Duration,
    /// Stage artifacts on every node before any swap.
    pub prestage: bool,
}

/// How the driver behaves.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// Nodes asked at once when reading state or prestaging.
    pub concurrency: usize,
    /// How often a running operation is polled.
    pub poll_interval: Duration,
    /// The longest one node's upgrade may take before it counts as an error.
    pub node_timeout: Duration,
    /// Drain options sent with every upgrade.
    pub drain: Option<DrainOptions>,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            poll_interval: Duration::from_millis(200),
            node_timeout: Duration::from_secs(3600),
            drain: None,
        }
    }
}

/// Why a rollout could not run.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal does not match the inventory.
    #[error("the journal names node {0}, which the inventory does not list")]
    UnknownNode(NodeName),
    /// The rollout's limits make no sense.
    #[error("{0}")]
    BadLimits(String),
    /// The rollout was aborted: abort is final, so it is not resumed.
    #[error("the rollout of {} was aborted; an aborted rollout is not resumed (start a new one)", .0.display())]
    Aborted(PathBuf),
}

/// How one node's upgrade ended.
#[derive(Debug, Clone)]
enum NodeOutcome {
    Patched,
    Skipped,
    Failed { error: NodeError, unavailable: bool },
}

/// A rollout in progress.
pub struct Rollout {
    client: AgentClient,
    journal_path: PathBuf,
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

/// Each of the journal's nodes looked up in the inventory once: its address,
/// and its planner view.
fn placement(inventory: &Inventory, journal: &Journal) -> Result<(Vec<String>, Vec<PlanNode>), RolloutError> {
    let by_name: HashMap<&NodeName, &crate::inventory::InventoryNode> =
        inventory.nodes.iter().map(|n| (&n.name, n)).collect();
    journal
        .nodes
        .iter()
        .map(|node| {
            let found = by_name.get(&node.name).ok_or_else(|| RolloutError::UnknownNode(node.name.clone()))?;
            let view = PlanNode {
                role: found.role,
                zone: found.zone().map(str::to_owned),
                status: node.status,
                unavailable: node.unavailable,
            };
            Ok((found.address.clone(), view))
        })
        .collect()
}

impl Rollout {
    /// A new rollout; nothing is sent until [`Rollout::run`].
    pub fn new(
        client: AgentClient,
        inventory: &Inventory,
        spec: RolloutSpec,
        journal_path: &Path,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        let total = inventory.nodes.len();
        let max_unavailable = spec.max_unavailable.resolve_nonzero(total);
        if max_unavailable == 0 {
            return Err(RolloutError::BadLimits(format!(
                "--max-unavailable {} allows no node at all in a fleet of {total}",
                spec.max_unavailable
            )));
        }
        let suffix: u32 = rand::random();
        let journal = Journal {
            rollout_id: format!("r{}-{suffix:08x}", Utc::now().format("%Y%m%d%H%M%S")),
            target: spec.target,
            artifacts: spec.artifacts,
            limits: Limits {
                max_unavailable,
                max_failures: spec.max_failures.resolve(total),
                per_zone: spec.per_zone,
                soak_ms: u64::try_from(spec.soak.as_millis()).unwrap_or(u64::MAX),
            },
            prestage: spec.prestage,
            nodes: inventory
                .nodes
                .iter()
                .map(|node| JournalNode {
                    name: node.name.clone(),
                    status: NodeStatus::Pending,
                    operation: None,
                    error: None,
                    unavailable: false,
                })
                .collect(),
            started_at: Utc::now(),
            updated_at: Utc::now(),
            generation: 0,
        };
        Self::with_journal(client, inventory, journal_path, journal, settings)
    }

    fn with_journal(
        client: AgentClient,
        inventory: &Inventory,
        journal_path: &Path,
        journal: Journal,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        let (addresses, plan_view) = placement(inventory, &journal)?;
        let counters = Counters::of(&journal);
        Ok(Self {
            client,
            journal_path: journal_path.to_owned(),
            journal,
            settings,
            stop: Arc::default(),
            unlogged: Vec::new(),
            addresses,
            plan_view,
            counters,
        })
    }

    /// Reopens a journal to finish its rollout; an aborted one is refused.
    pub fn resume(
        client: AgentClient,
        inventory: &Inventory,
        journal_path: &Path,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        if read_control(journal_path) == Control::Abort {
            return Err(RolloutError::Aborted(journal_path.to_owned()));
        }
        let mut journal = Journal::load(journal_path)?;
        for node in &mut journal.nodes {
            if let NodeStatus::Soaking { .. } = node.status {
                node.status = NodeStatus::Soaking { until_ms: journal.limits.soak_ms };
            }
        }
        Self::with_journal(client, inventory, journal_path, journal, settings)
    }

    /// A flag that, once set (by a signal handler), stops new nodes from starting.
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

    fn save(&mut self) -> Result<(), RolloutError> {
        self.unlogged.clear();
        self.journal.save(&self.journal_path).map_err(RolloutError::from)
    }

    /// Appends every node changed since the last write to the journal's log.
    fn log_changes(&mut self) -> Result<(), RolloutError> {
        let changed = std::mem::take(&mut self.unlogged);
        self.journal.log_nodes(&self.journal_path, &changed).map_err(RolloutError::from)
    }

    /// Runs the rollout to its end (or until stopped), reporting to `sink`.
    pub async fn run(&mut self, sink: &mut dyn EventSink) -> Result<Summary, RolloutError> {
        self.save()?;
        sink.event(&Event::Started {
            rollout_id: self.journal.rollout_id.clone(),
            target: self.journal.target.to_string(),
            nodes: self.journal.nodes.len(),
        });
        self.observe_pending().await;
        self.counters = Counters::of(&self.journal);
        self.save()?;
        if self.journal.prestage {
            self.prestage(sink).await?;
        }
        let clock = Instant::now();
        let mut tasks: JoinSet<(usize, NodeOutcome)> = JoinSet::new();
        for index in 0..self.journal.nodes.len() {
            if self.journal.nodes[index].status == NodeStatus::InFlight {
                self.spawn_upgrade(&mut tasks, index);
            }
        }
        let mut reported_halt = None;
        loop {
            let stopped = self.stop.load(Ordering::Relaxed) || read_control(&self.journal_path) != Control::Run;
            let now_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.refresh_plan_view();
            let decision = plan(&self.plan_view, &self.journal.limits, stopped, now_ms);
            for &index in &decision.end_soak {
                let ready = self.still_ready(index).await;
                let outcome = if ready {
                    NodeOutcome::Patched
                } else {
                    NodeOutcome::Failed {
                        error: self.error(index, None, "soak_failed", "the node did not stay Ready while it soaked"),
                        unavailable: true,
                    }
                };
                self.finish_node(index, outcome, now_ms, true, sink)?;
            }
            if !decision.start.is_empty() {
                for &index in &decision.start {
                    self.journal.nodes[index].status = NodeStatus::InFlight;
                    self.unlogged.push(index);
                }
                // Logged before any request goes out, so a resume knows every node it may have started.
                self.log_changes()?;
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
            tokio::select! {
                finished = tasks.join_next(), if !tasks.is_empty() => {
                    let now_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let mut events = Vec::new();
                    let mut next = finished;
                    while let Some(result) = next {
                        if let Ok((index, outcome)) = result {
                            events.extend(self.record_outcome(index, outcome, now_ms, false));
                        }
                        next = tasks.try_join_next();
                    }
                    // Finished nodes are saved with the next batch of starts (or at the
                    // end): a resume re-asks an in-flight node with its token and gets the
                    // same, finished operation back, so nothing is lost meanwhile.
                    for event in &events {
                        sink.event(event);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        self.save()?;
        let summary = Summary {
            counters: Counters::of(&self.journal),
            errors: self.journal.nodes.iter().filter_map(|n| n.error.clone()).collect(),
            halt: reported_halt,
        };
        sink.event(&Event::Summary {
            counters: summary.counters,
            errors: summary.errors.clone(),
            halt: summary.halt.clone(),
        });
        Ok(summary)
    }

    /// Copies each node's progress from the journal into the planner's view.
    fn refresh_plan_view(&mut self) {
        for (view, node) in self.plan_view.iter_mut().zip(&self.journal.nodes) {
            view.status = node.status;
            view.unavailable = node.unavailable;
        }
    }

    fn error(&self, index: usize, step: Option<String>, code: &str, message: &str) -> NodeError {
        NodeError {
            node: self.journal.nodes[index].name.clone(),
            step,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// Records how a node ended, saves the journal, then reports it.
    fn finish_node(
        &mut self,
        index: usize,
        outcome: NodeOutcome,
        now_ms: u64,
        soak_over: bool,
        sink: &mut dyn EventSink,
    ) -> Result<(), RolloutError> {
        let event = self.record_outcome(index, outcome, now_ms, soak_over);
        self.log_changes()?;
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
        let label = match &outcome {
            NodeOutcome::Patched if !soak_over && soak_ms > 0 => {
                node.status = NodeStatus::Soaking { until_ms: now_ms + soak_ms };
                return None;
            }
            NodeOutcome::Patched => {
                node.status = NodeStatus::Patched;
                "patched"
            }
            NodeOutcome::Skipped => {
                node.status = NodeStatus::Skipped;
                "skipped"
            }
            NodeOutcome::Failed { error, unavailable } => {
                node.status = NodeStatus::Failed;
                node.error = Some(error.clone());
                node.unavailable = *unavailable;
                "error"
            }
        };
        let name = node.name.to_string();
        let error = node.error.clone();
        self.counters.moved(before, node.status);
        Some(Event::NodeFinished { node: name, outcome: label.to_owned(), error, counters: self.counters })
    }

    /// Reads every pending node's state: unreachable, cordoned or Degraded nodes
    /// count as unavailable, and nodes already at the target are skipped.
    async fn observe_pending(&mut self) {
        let pending: Vec<usize> =
            (0..self.journal.nodes.len()).filter(|&i| self.journal.nodes[i].status == NodeStatus::Pending).collect();
        let client = self.client.clone();
        let addresses: Vec<(usize, String)> = pending.iter().map(|&i| (i, self.address(i))).collect();
        let states: Vec<(usize, Result<NodeState, ClientError>)> = stream::iter(addresses)
            .map(|(index, address)| {
                let client = client.clone();
                async move { (index, client.node(&address).await) }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (index, state) in states {
            match state {
                Ok(state) => {
                    let at_target = self.journal.artifacts.iter().all(|artifact| {
                        state.components.iter().any(|c| {
                            c.name == artifact.component && c.observed_version.as_ref() == Some(&self.journal.target)
                        })
                    });
                    let node = &mut self.journal.nodes[index];
                    node.unavailable = state.cordoned || state.phase == NodePhase::Degraded;
                    if at_target && !self.journal.artifacts.is_empty() {
                        node.status = NodeStatus::Skipped;
                    }
                }
                Err(_) => self.journal.nodes[index].unavailable = true,
            }
        }
    }

    async fn still_ready(&self, index: usize) -> bool {
        let address = self.address(index);
        matches!(self.client.node(&address).await, Ok(state) if state.phase == NodePhase::Idle)
    }

    fn request(&self, index: usize, stage_only: bool) -> UpgradeRequest {
        let node = &self.journal.nodes[index].name;
        UpgradeRequest {
            target_version: self.journal.target.clone(),
            artifacts: self.journal.artifacts.clone(),
            request_token: Some(self.journal.token_for(node, stage_only)),
            force: false,
            drain: self.settings.drain.clone(),
            dry_run: false,
            stage_only,
            control_plane_version: None,
        }
    }

    fn spawn_upgrade(&self, tasks: &mut JoinSet<(usize, NodeOutcome)>, index: usize) {
        let client = self.client.clone();
        let address = self.address(index);
        let request = self.request(index, false);
        let name = self.journal.nodes[index].name.clone();
        let settings = self.settings.clone();
        tasks.spawn(async move { (index, upgrade_node(&client, &address, &name, &request, &settings).await) });
    }

    /// Stages the artifacts on every pending node first, a bounded number at once.
    async fn prestage(&mut self, sink: &mut dyn EventSink) -> Result<(), RolloutError> {
        let pending: Vec<usize> =
            (0..self.journal.nodes.len()).filter(|&i| self.journal.nodes[i].status == NodeStatus::Pending).collect();
        let jobs: Vec<(usize, String, NodeName, UpgradeRequest)> = pending
            .iter()
            .map(|&i| (i, self.address(i), self.journal.nodes[i].name.clone(), self.request(i, true)))
            .collect();
        let client = self.client.clone();
        let settings = self.settings.clone();
        let results: Vec<(usize, NodeOutcome)> = stream::iter(jobs)
            .map(|(index, address, name, request)| {
                let client = client.clone();
                let settings = settings.clone();
                async move { (index, upgrade_node(&client, &address, &name, &request, &settings).await) }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (index, outcome) in results {
            if let NodeOutcome::Failed { .. } = outcome {
                self.finish_node(index, outcome, 0, true, sink)?;
            }
        }
        self.save()
    }
}

/// Upgrades one node: sends the request (retried with the same token) and polls
/// the operation until it ends.
async fn upgrade_node(
    client: &AgentClient,
    address: &str,
    name: &NodeName,
    request: &UpgradeRequest,
    settings: &DriverSettings,
) -> NodeOutcome {
    let failed = |step: Option<String>, code: String, message: String, unavailable: bool| NodeOutcome::Failed {
        error: NodeError { node: name.clone(), step, code, message },
        unavailable,
    };
    let deadline = Instant::now() + settings.node_timeout;
    let mut operation = loop {
        match client.upgrade(address, request, None).await {
            Ok(operation) => break operation,
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(settings.poll_interval * 5).await;
            }
            Err(error) => return failed(None, error.report_code(), error.to_string(), error.is_transient()),
        }
    };
    let id: OperationId = operation.id.clone();
    // Ask soon (a fast upgrade ends in milliseconds), then back off to the poll interval.
    let mut wait = settings.poll_interval.min(Duration::from_millis(5));
    while !operation.phase.is_terminal() {
        if Instant::now() > deadline {
            return failed(
                None,
                "timeout".into(),
                format!("operation {id} still running after {:?}", settings.node_timeout),
                true,
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(settings.poll_interval);
        match client.operation(address, &id).await {
            Ok(latest) => operation = latest,
            Err(error) if error.is_transient() => continue,
            Err(error) => return failed(None, error.report_code(), error.to_string(), false),
        }
    }
    outcome_of(&operation, request.stage_only, &failed)
}

fn outcome_of(
    operation: &Operation,
    stage_only: bool,
    failed: &dyn Fn(Option<String>, String, String, bool) -> NodeOutcome,
) -> NodeOutcome {
    match operation.phase {
        OperationPhase::Succeeded if operation.no_op => NodeOutcome::Skipped,
        OperationPhase::Succeeded if stage_only => NodeOutcome::Patched,
        OperationPhase::Succeeded => NodeOutcome::Patched,
        phase => {
            let detail = operation.errors.first().and_then(|e| e.details.first());
            let step = detail.map(|d| d.field.clone());
            let code = detail.map_or_else(|| format!("{phase:?}").to_lowercase(), |d| d.code.clone());
            let message =
                operation.errors.first().map_or_else(|| format!("operation ended {phase:?}"), |e| e.message.clone());
            failed(step, code, message, phase == OperationPhase::RolledBack)
        }
    }
}
