//! An update's workflow: PreCheck, Snapshot, Upgrade, PostCheck, each task
//! written as started before it acts and as ended once it did. The workflow
//! waits while paused, ends at the next safe point when cancelled, and when
//! the service stops it leaves the update InProgress for the next start to
//! pick up: tasks that succeeded are not run again, and the rollout resumes
//! from its journal with the same request tokens.
//!
//! - this file: the order of the tasks, pause, cancel, the end.
//! - `tasks`: what each task does.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control::Control;
use crate::journal::JournalError;
use crate::rollout::RolloutError;
use crate::store::{Batch, StoreError};

use super::cluster::ClusterRuntime;
use super::log::UpdateLog;
use super::model::{EventKind, HistoryEntry, HistoryState, MAX_HISTORY, TaskStatus, TaskType, UpdateStatus, Waiting};
use super::records::Records;

mod tasks;

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
            WorkflowError::Rollout(RolloutError::EtcdSnapshot(_)) => "etcd_snapshot_failed",
            WorkflowError::Rollout(_) => "rollout_failed",
        }
    }
}

/// How a task ended.
pub(super) enum TaskEnd {
    Success(String),
    Failed(String),
    Cancelled,
    /// The service is stopping.
    Interrupted,
}

/// Whether the workflow may go on.
pub(super) enum Gate {
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

    pub(super) fn id(&self) -> String {
        self.log.update().id
    }

    /// Runs the tasks not yet done; true when the update ended, false when the service stops.
    async fn drive(&self) -> Result<bool, WorkflowError> {
        let dry_run = self.log.update().is_dry_run();
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
    pub(super) async fn gate(&self) -> Result<Gate, WorkflowError> {
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

    /// Records the end: the update's last state, the history, no running update.
    async fn finish(&self) {
        let mut state = self.cluster.state.lock().await;
        let update = self.log.update();
        let mut batch = Batch::new();
        Records::put_current(&mut batch, self.cluster.name(), None);
        let dry_run = update.is_dry_run();
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
