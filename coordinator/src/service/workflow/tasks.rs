//! What each task of an update's workflow does: PreCheck, Snapshot, Upgrade
//! (the rollout engine over the store, resumed from its journal), PostCheck.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use upkeep_common::ids::NodeName;

use crate::control::ControlSource;
use crate::journal::JournalError;
use crate::plan::{Halt, Limit, NodeStatus};
use crate::rollout::{DriverSettings, Rollout, RolloutError, RolloutSpec, RolloutStorage};
use crate::store::Batch;

use super::super::checks::{NodesBefore, postcheck, precheck};
use super::super::model::TaskType;
use super::super::records::Records;
use super::super::sink::{UpdateSink, add_node_error, role_counters};
use super::{Gate, TaskEnd, Workflow, WorkflowError};

impl Workflow {
    pub(super) async fn precheck(&self) -> Result<TaskEnd, WorkflowError> {
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
            images: before.images,
        };
        Ok(Rollout::new(client, inventory, spec, storage, settings).await?)
    }

    fn sink(&self, task: TaskType) -> UpdateSink {
        UpdateSink { log: self.log.clone(), roles: self.cluster.roles.clone(), task }
    }

    /// Records each node's version, takes the etcd snapshot before the
    /// control plane is touched (its file, size and sha256 in the message), and
    /// stages everywhere when the policy asks.
    pub(super) async fn snapshot(&self) -> Result<TaskEnd, WorkflowError> {
        let mut rollout = self.open_rollout().await?;
        let etcd = match rollout.snapshot_etcd().await? {
            Some(taken) => format!(
                "etcd snapshot {} kept on {} ({} bytes, sha256 {})",
                taken.info.path, taken.node, taken.info.size, taken.info.sha256
            ),
            None => "no etcd snapshot (the control plane is not changed, or no agent has [etcd])".to_owned(),
        };
        if !self.log.update().prestage {
            return Ok(TaskEnd::Success(format!("each node's version recorded; {etcd}; staging is off in the policy")));
        }
        rollout.stage_everywhere(&mut self.sink(TaskType::Snapshot)).await?;
        let failed = self.log.update().errors.iter().filter(|e| e.task == TaskType::Snapshot).count();
        Ok(TaskEnd::Success(format!(
            "each node's version recorded; {etcd}; artifacts staged ({failed} kinds of failure)"
        )))
    }

    pub(super) async fn upgrade(&self) -> Result<TaskEnd, WorkflowError> {
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
    pub(super) async fn postcheck(&self) -> Result<TaskEnd, WorkflowError> {
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
}
