//! An update's workflow: PreCheck, Snapshot, Upgrade, PostCheck, each task
//! written as started before it acts and as ended once it did. The workflow
//! waits while paused, ends at the next safe point when cancelled, and when
//! the service stops it leaves the update InProgress for the next start to
//! pick up: tasks that succeeded are not run again, and the rollout resumes
//! from its journal with the same request tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use upkeep_common::ids::NodeName;

use crate::control::{Control, ControlSource};
use crate::journal::JournalError;
use crate::plan::{Halt, Limit, NodeStatus};
use crate::rollout::{DriverSettings, Rollout, RolloutError, RolloutSpec, RolloutStorage};
use crate::store::{Batch, StoreError};

use super::checks::{NodesBefore, postcheck, precheck};
use super::cluster::ClusterRuntime;
use super::log::UpdateLog;
use super::model::{EventKind, HistoryEntry, HistoryState, MAX_HISTORY, TaskStatus, TaskType, UpdateStatus, Waiting};
use super::records::Records;
use super::sink::{UpdateSink, add_node_error, role_counters};

/// How often a running update's record and events are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Why a workflow could not go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rollout could not run.
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl WorkflowError {
    fn code(&self) -> &'static str {
        match self {
            WorkflowError::Store(_) | WorkflowError::Journal(_) => "store_failed",
            WorkflowError::Rollout(_) => "rollout_failed",
        }
    }
}

/// How a task ended.
enum TaskEnd {
    Success(String),
    Failed(String),
    Cancelled,
    /// The service is stopping.
    Interrupted,
}

/// Whether the workflow may go on.
enum Gate {
    Go,
    Cancelled,
    Shutdown,
}

/// One update's workflow.
pub struct Workflow {
    /// The cluster.
    pub cluster: Arc<ClusterRuntime>,
    /// The update's record and events.
    pub log: Arc<UpdateLog>,
    /// Pause, resume, cancel.
    pub control: watch::Receiver<Control>,
}

impl Workflow {
    /// Runs the update to its end, or until the service stops.
    pub async fn run(self) {
        let log = self.log.clone();
        // In a JoinSet, so the flusher ends with the workflow even when the workflow's task is aborted.
        let mut flusher = JoinSet::new();
        flusher.spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_INTERVAL).await;
                if let Err(error) = log.flush().await {
                    tracing::error!(%error, "an update's progress could not be stored; trying again");
                }
            }
        });
        let ended = match self.drive().await {
            Ok(ended) => ended,
            Err(error) => {
                tracing::error!(%error, update = %self.log.update().id, "the update stopped");
                self.log.edit(|update| {
                    update.errors.push(super::model::UpdateError {
                        error_code: error.code().to_owned(),
                        error_message: error.to_string(),
                        task: current_task(update),
                        resource_ids: Vec::new(),
                    });
                });
                self.settle(UpdateStatus::Failed);
                true
            }
        };
        flusher.abort_all();
        if ended {
            self.finish().await;
        } else if let Err(error) = self.log.flush().await {
            tracing::error!(%error, "an update's progress could not be stored before stopping");
        }
    }

    fn id(&self) -> String {
        self.log.update().id
    }

    /// Runs the tasks not yet done; true when the update ended, false when the service stops.
    async fn drive(&self) -> Result<bool, WorkflowError> {
        let dry_run = self.log.update().params.iter().any(|p| p.kind == "DryRun" && p.value == "true");
        for kind in [TaskType::PreCheck, TaskType::Snapshot, TaskType::Upgrade, TaskType::PostCheck] {
            let done = self.log.update().tasks.iter().any(|t| t.kind == kind && t.status == TaskStatus::Success);
            if done {
                continue;
            }
            match self.gate().await? {
                Gate::Go => {}
                Gate::Cancelled => {
                    self.settle(UpdateStatus::Cancelled);
                    return Ok(true);
                }
                Gate::Shutdown => return Ok(false),
            }
            self.set_task(kind, TaskStatus::Running, String::new()).await?;
            let end = match kind {
                TaskType::PreCheck => self.precheck().await?,
                TaskType::Snapshot => self.snapshot().await?,
                TaskType::Upgrade => self.upgrade().await?,
                TaskType::PostCheck => self.postcheck().await?,
            };
            match end {
                TaskEnd::Success(message) => self.set_task(kind, TaskStatus::Success, message).await?,
                TaskEnd::Failed(message) => {
                    self.set_task(kind, TaskStatus::Failed, message).await?;
                    self.settle(UpdateStatus::Failed);
                    return Ok(true);
                }
                TaskEnd::Cancelled => {
                    self.set_task(kind, TaskStatus::Failed, "cancelled".to_owned()).await?;
                    self.settle(UpdateStatus::Cancelled);
                    return Ok(true);
                }
                TaskEnd::Interrupted => return Ok(false),
            }
            if dry_run && kind == TaskType::PreCheck {
                break;
            }
        }
        let failed = !self.log.update().errors.is_empty();
        self.settle(if failed { UpdateStatus::Failed } else { UpdateStatus::Successful });
        Ok(true)
    }

    /// Marks task `kind` and queues the next one, then stores it (before the task acts).
    async fn set_task(&self, kind: TaskType, status: TaskStatus, message: String) -> Result<(), WorkflowError> {
        let now = Utc::now();
        self.log.edit(|update| {
            let mut queue_next = false;
            for task in &mut update.tasks {
                if queue_next && task.status == TaskStatus::Init {
                    task.status = TaskStatus::Queuing;
                    queue_next = false;
                }
                if task.kind == kind {
                    task.status = status;
                    task.message.clone_from(&message);
                    match status {
                        TaskStatus::Running => task.started_at = Some(now),
                        TaskStatus::Success | TaskStatus::Failed => {
                            task.ended_at = Some(now);
                            queue_next = status == TaskStatus::Success;
                        }
                        TaskStatus::Init | TaskStatus::Queuing => {}
                    }
                }
            }
        });
        self.log.push(EventKind::Task { task: kind, status, message });
        Ok(self.log.flush().await?)
    }

    /// Sets the update's final (or paused/running) status.
    fn settle(&self, status: UpdateStatus) {
        self.log.edit(|update| {
            update.status = status;
            update.waiting = None;
            if status.is_final() {
                update.ended_at = Some(Utc::now());
            }
        });
        self.log.push(EventKind::Status { status });
    }

    /// Waits while the update is paused; says whether it may go on.
    async fn gate(&self) -> Result<Gate, WorkflowError> {
        let mut control = self.control.clone();
        let mut shutdown = self.cluster.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return Ok(Gate::Shutdown);
            }
            let asked = *control.borrow_and_update();
            match asked {
                Control::Run => {
                    if self.log.update().status == UpdateStatus::Paused {
                        self.settle(UpdateStatus::InProgress);
                        self.log.flush().await?;
                    }
                    return Ok(Gate::Go);
                }
                Control::Abort => return Ok(Gate::Cancelled),
                Control::Pause => {
                    if self.log.update().status != UpdateStatus::Paused {
                        self.settle(UpdateStatus::Paused);
                        self.log.edit(|update| {
                            update.waiting = Some(Waiting {
                                reason: "paused".to_owned(),
                                message: "paused by an operator: no node starts until it is resumed".to_owned(),
                            });
                        });
                        self.log.flush().await?;
                    }
                    tokio::select! {
                        _ = control.changed() => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    async fn precheck(&self) -> Result<TaskEnd, WorkflowError> {
        let update = self.log.update();
        let catalog = self.cluster.catalog();
        let Some(release) = catalog.release(&update.target_version).cloned() else {
            return Ok(TaskEnd::Failed(format!(
                "version {} is no longer in the release catalog",
                update.target_version
            )));
        };
        let (before, problems) = precheck(&self.cluster, &update.id, &release).await;
        let mut batch = Batch::new();
        Records::put_nodes_before(&mut batch, self.cluster.name(), &update.id, &before);
        self.log.edit(|update| {
            for problem in &problems {
                add_node_error(update, TaskType::PreCheck, problem);
            }
        });
        self.log.flush_with(batch).await?;
        let total = self.cluster.inventory.nodes.len();
        if problems.len() > update.limits.max_failures {
            return Ok(TaskEnd::Failed(format!(
                "{} of {total} nodes failed PreCheck, more than the {} failures the policy tolerates",
                problems.len(),
                update.limits.max_failures
            )));
        }
        Ok(TaskEnd::Success(format!(
            "{} of {total} nodes passed; {} failed and are tolerated",
            total - problems.len(),
            problems.len()
        )))
    }

    async fn nodes_before(&self) -> Result<NodesBefore, WorkflowError> {
        Ok(self.cluster.records.nodes_before(self.cluster.name(), &self.id()).await?.unwrap_or_default())
    }

    /// The update's rollout: resumed from its journal, or new.
    async fn open_rollout(&self) -> Result<Rollout, WorkflowError> {
        let update = self.log.update();
        let storage = RolloutStorage {
            journal: self.cluster.records.journal(self.cluster.name(), &update.id),
            control: ControlSource::Shared(self.control.clone()),
        };
        let settings = DriverSettings {
            concurrency: self.cluster.settings.concurrency,
            poll_interval: self.cluster.settings.poll_interval,
            node_timeout: Duration::from_secs(update.node_timeout_secs),
            stop_timeout: self.cluster.settings.stop_timeout,
            drain: None,
        };
        let (client, inventory) = (self.cluster.client.clone(), &self.cluster.inventory);
        match Rollout::resume(client.clone(), inventory, storage.clone(), settings.clone()).await {
            Err(RolloutError::Journal(JournalError::Missing(_))) => {}
            opened => return Ok(opened?),
        }
        let before = self.nodes_before().await?;
        let spec = RolloutSpec {
            id: Some(update.id.clone()),
            target: update.target_version.clone(),
            artifacts: Vec::new(),
            artifacts_by_arch: before.artifacts,
            node_arch: before
                .arch
                .into_iter()
                .filter_map(|(name, arch)| name.parse::<NodeName>().ok().map(|name| (name, arch)))
                .collect(),
            max_unavailable: Limit::Count(update.limits.max_unavailable),
            max_failures: Limit::Count(update.limits.max_failures),
            per_zone: update.limits.per_zone,
            soak: Duration::from_millis(update.limits.soak_ms),
            prestage: update.prestage,
        };
        Ok(Rollout::new(client, inventory, spec, storage, settings).await?)
    }

    fn sink(&self, task: TaskType) -> UpdateSink {
        UpdateSink { log: self.log.clone(), roles: self.cluster.roles.clone(), task }
    }

    async fn snapshot(&self) -> Result<TaskEnd, WorkflowError> {
        if !self.log.update().prestage {
            return Ok(TaskEnd::Success("each node's version recorded; staging is off in the policy".to_owned()));
        }
        let mut rollout = self.open_rollout().await?;
        rollout.stage_everywhere(&mut self.sink(TaskType::Snapshot)).await?;
        let failed = self.log.update().errors.iter().filter(|e| e.task == TaskType::Snapshot).count();
        Ok(TaskEnd::Success(format!("each node's version recorded; artifacts staged ({failed} kinds of failure)")))
    }

    async fn upgrade(&self) -> Result<TaskEnd, WorkflowError> {
        loop {
            let mut rollout = self.open_rollout().await?;
            // A resumed rollout's nodes may have moved past what the record last stored.
            match self.cluster.records.journal(self.cluster.name(), &self.id()).load().await {
                Ok(journal) => {
                    let counters = role_counters(&journal, &self.cluster.roles);
                    self.log.edit(|update| update.counters = counters);
                }
                Err(JournalError::Missing(_)) => {}
                Err(error) => return Err(error.into()),
            }
            let stop = rollout.stop_flag();
            let mut shutdown = self.cluster.shutdown.clone();
            let mut watcher = JoinSet::new();
            watcher.spawn(async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
                stop.store(true, Ordering::Relaxed);
            });
            let summary = rollout.run(&mut self.sink(TaskType::Upgrade)).await;
            watcher.abort_all();
            let summary = summary?;
            match summary.halt {
                None => {
                    let c = summary.counters;
                    return Ok(TaskEnd::Success(format!(
                        "{} patched, {} skipped, {} in error",
                        c.patched, c.skipped, c.error
                    )));
                }
                Some(Halt::StopWaitEnded { .. }) => return Ok(TaskEnd::Interrupted),
                Some(Halt::Stopped) => match self.gate().await? {
                    Gate::Go => continue,
                    Gate::Cancelled => return Ok(TaskEnd::Cancelled),
                    Gate::Shutdown => return Ok(TaskEnd::Interrupted),
                },
                Some(other) => return Ok(TaskEnd::Failed(other.to_string())),
            }
        }
    }

    /// Reads every patched node again; one that no longer reports the target
    /// moves from patched to error, in the journal and the counters.
    async fn postcheck(&self) -> Result<TaskEnd, WorkflowError> {
        let journals = self.cluster.records.journal(self.cluster.name(), &self.id());
        let mut journal = journals.load().await?;
        let problems = postcheck(&self.cluster, &journal).await;
        if problems.is_empty() {
            return Ok(TaskEnd::Success(format!("every patched node reports {}", journal.target)));
        }
        let mut changed = Vec::new();
        for problem in &problems {
            if let Some(index) = journal.nodes.iter().position(|node| node.name == problem.node) {
                journal.nodes[index].status = NodeStatus::Failed;
                journal.nodes[index].error = Some(problem.clone());
                changed.push(index);
            }
        }
        journals.log_nodes(&journal, &changed).await?;
        let counters = role_counters(&journal, &self.cluster.roles);
        self.log.edit(|update| {
            update.counters = counters;
            for problem in &problems {
                add_node_error(update, TaskType::PostCheck, problem);
            }
        });
        Ok(TaskEnd::Failed(format!("{} patched nodes do not report {}", problems.len(), journal.target)))
    }

    /// Records the end: the update's last state, the history, no running update.
    async fn finish(&self) {
        let mut state = self.cluster.state.lock().await;
        let update = self.log.update();
        let mut batch = Batch::new();
        Records::put_current(&mut batch, self.cluster.name(), None);
        let dry_run = update.params.iter().any(|p| p.kind == "DryRun" && p.value == "true");
        let upgraded = update.tasks.iter().any(|t| t.kind == TaskType::Upgrade && t.started_at.is_some());
        if !dry_run && upgraded {
            let mut history = self.cluster.records.history(self.cluster.name()).await.unwrap_or_default();
            let failed_nodes = update.counters.control_plane.error + update.counters.workers.error;
            let verified =
                update.tasks.iter().any(|t| t.kind == TaskType::PostCheck && t.status == TaskStatus::Success);
            history.insert(
                0,
                HistoryEntry {
                    version: update.target_version.clone(),
                    state: if failed_nodes == 0 && verified { HistoryState::Completed } else { HistoryState::Partial },
                    update: update.id.clone(),
                    started_at: update.created_at,
                    completed_at: update.ended_at.unwrap_or_else(Utc::now),
                    verified,
                    accepted_risks: update.accepted_risks.clone(),
                },
            );
            history.truncate(MAX_HISTORY);
            Records::put_history(&mut batch, self.cluster.name(), &history);
        }
        if let Err(error) = self.log.flush_with(batch).await {
            tracing::error!(%error, "the end of an update could not be stored; it is finished again at the next start");
            return;
        }
        state.running = None;
        state.last = Some(update);
        drop(state);
        self.cluster.read_nodes().await;
    }
}

/// The task running now, or the first not done.
fn current_task(update: &super::model::Update) -> TaskType {
    update
        .tasks
        .iter()
        .find(|t| matches!(t.status, TaskStatus::Running | TaskStatus::Queuing | TaskStatus::Init))
        .map_or(TaskType::PreCheck, |t| t.kind)
}
