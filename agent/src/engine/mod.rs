//! The upgrade engine: accepts operations, runs their steps one at a time in a
//! background task, saves every change before acting on it, and keeps the node
//! view (phase, conditions, history) in step.
//!
//! # Layout
//!
//! - [`submit`]: accepting new operations, cancel, and request-token replay.
//! - [`admission`]: field checks and version rules for a new upgrade.
//! - [`build`]: a new operation's record and plan.
//! - [`decide`]: the next action of an operation and the recovery table (pure).
//! - [`transition`]: the changes a step's start and outcome make to a record (pure).
//! - [`runner`]: the I/O that carries out those decisions, step by step.
//! - [`ending`]: abort, rollback and finish.
//! - [`steps`]: each step's work against the host.
//! - [`record`]: what is saved for each operation and for the node.
//! - [`tokens`]: the durable request-token index.
//! - [`publish`]: the engine's part of the node view.
//! - [`recovery`]: what happens on start to operations a kill interrupted.
//! - [`crash`]: named points where the durability tests kill the agent.
//!
//! Only one operation runs at a time; a second is refused with 409 while one runs.
//! The same request token always answers with the same operation.
//!
//! Locking: reads take the state lock only for as long as a copy takes. Writers
//! take the writer lock first, change a copy, save it to disk without the state
//! lock, then install it; so a slow disk never holds up `GET /v1/node`.

pub mod admission;
pub mod build;
pub mod crash;
pub mod decide;
pub mod ending;
pub mod publish;
pub mod record;
pub mod recovery;
pub mod runner;
pub mod steps;
pub mod submit;
pub mod tokens;
pub mod transition;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use upkeep_common::api::Operation;
use upkeep_common::ids::OperationId;

use crate::config::AgentConfig;
use crate::engine::record::{DegradedReason, NodeRecord, OperationRecord};
use crate::engine::tokens::{ArchivedToken, TokenEntry, TokenIndex};
use crate::host::Host;
use crate::node::NodeView;
use crate::server::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How many finished operations are kept in the recent list (in memory and on disk).
pub const KEPT_OPERATIONS: usize = 100;

/// The engine of one agent.
pub struct Engine {
    /// The agent's configuration (the one its [`crate::app::App`] holds).
    pub config: Arc<AgentConfig>,
    /// The host it acts on.
    pub host: Host,
    store: Store,
    node: Arc<NodeView>,
    metrics: Arc<Metrics>,
    state: Mutex<EngineState>,
    /// Held by whoever changes the state, across the disk write.
    writer: Mutex<()>,
    /// Counts published changes, for requests that wait for one.
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct EngineState {
    /// Boxed: a map keeps spare slots, and a record is large.
    operations: HashMap<OperationId, Box<OperationRecord>>,
    order: Vec<OperationId>,
    tokens: TokenIndex,
    current: Option<OperationId>,
    node: NodeRecord,
    cancels: HashMap<OperationId, watch::Sender<bool>>,
    runners: HashMap<OperationId, AbortHandle>,
}

/// Why the engine could not start.
pub type OpenError = StoreError;

impl Engine {
    /// Loads saved state; call [`recovery::resume_interrupted`] next.
    pub fn open(
        config: Arc<AgentConfig>,
        host: Host,
        store: Store,
        node: Arc<NodeView>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Engine>, OpenError> {
        let node_record: NodeRecord = store.load_node()?.unwrap_or_default();
        let mut records: Vec<OperationRecord> = store.load_operations()?;
        records.sort_by_key(|record| record.operation.created_at);
        let mut state = EngineState { node: node_record, ..EngineState::default() };
        for archived in store.load_tokens::<ArchivedToken>()? {
            state.tokens.insert(archived.entry);
        }
        for record in records {
            let id = record.operation.id.clone();
            if let Some(entry) = token_entry(&record) {
                state.tokens.insert(entry);
            }
            if !record.operation.phase.is_terminal() {
                state.current = Some(id.clone());
            }
            state.order.push(id.clone());
            state.operations.insert(id, Box::new(record));
        }
        let engine = Arc::new(Engine {
            config,
            host,
            store,
            node,
            metrics,
            state: Mutex::new(state),
            writer: Mutex::new(()),
            changes: watch::Sender::new(0),
        });
        engine.publish(&engine.lock());
        Ok(engine)
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Recent operations, newest first.
    pub fn operations(&self) -> Vec<Operation> {
        let state = self.lock();
        state.order.iter().rev().filter_map(|id| state.operations.get(id)).map(|r| r.operation.clone()).collect()
    }

    /// One operation.
    pub fn operation(&self, id: &OperationId) -> Option<Operation> {
        self.lock().operations.get(id).map(|record| record.operation.clone())
    }

    /// A copy of an operation's record.
    pub fn record(&self, id: &OperationId) -> Option<OperationRecord> {
        self.lock().operations.get(id).map(|record| OperationRecord::clone(record))
    }

    /// A copy of the node record.
    pub fn node_record(&self) -> NodeRecord {
        self.lock().node.clone()
    }

    /// Starts runners for every operation a stop interrupted (see [`recovery`]).
    pub fn resume_interrupted(self: &Arc<Self>) -> Vec<OperationId> {
        let mut state = self.lock();
        let interrupted: Vec<OperationId> = state
            .order
            .iter()
            .filter(|id| state.operations.get(*id).is_some_and(|r| !r.operation.phase.is_terminal()))
            .cloned()
            .collect();
        for id in &interrupted {
            state.current = Some(id.clone());
            self.spawn_runner(&mut state, id.clone());
        }
        self.publish(&state);
        interrupted
    }

    /// Stops every runner where it is, as a kill would (the saved state is
    /// resumed by the next engine opened on the same store).
    pub fn stop(&self) {
        let mut state = self.lock();
        for (_, runner) in state.runners.drain() {
            runner.abort();
        }
    }

    /// Runs operation `id` in a task of its own. A panic that escapes the
    /// runner (a defect outside any step) ends the operation Failed, so the
    /// node takes new work.
    fn spawn_runner(self: &Arc<Self>, state: &mut EngineState, id: OperationId) {
        let (sender, receiver) = watch::channel(state.operations.get(&id).is_some_and(|r| r.cancel_requested));
        state.cancels.insert(id.clone(), sender);
        let engine = self.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            let run = AssertUnwindSafe(runner::run(engine.clone(), task_id.clone(), receiver)).catch_unwind();
            if let Err(panic) = run.await {
                engine.end_after_defect(&task_id, &runner::panic_message(panic.as_ref()));
            }
        });
        state.runners.insert(id, task.abort_handle());
    }

    fn end_after_defect(&self, id: &OperationId, what: &str) {
        tracing::error!(operation = %id, panic = %what, "the operation's runner stopped on a defect; it ends Failed");
        let mut swapped = false;
        let saved = self.update(id, |record| {
            if !record.operation.phase.is_terminal() {
                swapped = transition::end_after_defect(record, what, Utc::now());
            }
        });
        if let Err(error) = saved {
            tracing::error!(operation = %id, %error, "operation state could not be saved");
        }
        if swapped {
            let degraded = DegradedReason {
                reason: "OperationDefect".into(),
                message: format!("operation {id} stopped on a defect after its swap ({what}); binaries need attention"),
                since: Utc::now(),
            };
            if let Err(error) = self.update_node(|node| node.degraded = Some(degraded)) {
                tracing::error!(%error, "node state could not be saved");
            }
        }
    }

    /// Applies a change to an operation's record and saves it. The change is
    /// kept in memory even when the disk refuses it (the error is returned), so
    /// a running operation still reaches its end.
    pub fn update(&self, id: &OperationId, change: impl FnOnce(&mut OperationRecord)) -> Result<(), StoreError> {
        let _writer = self.writer();
        let Some(mut record) = self.record(id) else {
            return Err(StoreError::Corrupt { path: id.as_str().into(), reason: "operation vanished".into() });
        };
        let was_terminal = record.operation.phase.is_terminal();
        change(&mut record);
        let saved = self.save_operation(id, &record);
        let (kind, phase) = (record.operation.kind, record.operation.phase);
        let mut state = self.lock();
        state.operations.insert(id.clone(), Box::new(record));
        if phase.is_terminal() {
            if state.current.as_ref() == Some(id) {
                state.current = None;
            }
            state.cancels.remove(id);
            state.runners.remove(id);
            if !was_terminal {
                self.metrics.record_operation(kind, phase);
            }
        }
        self.publish(&state);
        saved
    }

    /// Saves operation `id`'s record, counted in the metrics.
    fn save_operation(&self, id: &OperationId, record: &OperationRecord) -> Result<(), StoreError> {
        self.store.save_operation(id.as_str(), record).inspect(|()| self.metrics.record_state_write("operation"))
    }

    /// Applies a change to the node record and saves it before returning.
    pub fn update_node(&self, change: impl FnOnce(&mut NodeRecord)) -> Result<(), StoreError> {
        let _writer = self.writer();
        let mut node = self.node_record();
        change(&mut node);
        let saved = self.store.save_node(&node).inspect(|()| self.metrics.record_state_write("node"));
        let mut state = self.lock();
        state.node = node;
        self.publish(&state);
        saved
    }

    /// Records a step's duration.
    pub fn observe_step(&self, step: upkeep_common::api::StepName, seconds: f64) {
        self.metrics.observe_step(step, seconds);
    }

    /// Runs the version commands now and updates the node view.
    pub async fn refresh_versions(&self) {
        crate::refresh::probe_versions(&self.config, &self.host, &self.node, &self.metrics).await;
    }

    /// A receiver that sees every change the engine publishes (an operation's
    /// step or phase, the node record), for a request that waits for one.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Copies the engine's state into the node view and tells waiting requests.
    fn publish(&self, state: &EngineState) {
        let current = state.current.as_ref().and_then(|id| state.operations.get(id)).map(Box::as_ref);
        self.node.update(|view| publish::project(view, &state.node, current, Utc::now()));
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// The token-index entry of a record that carries a token.
fn token_entry(record: &OperationRecord) -> Option<TokenEntry> {
    record.operation.request_token.as_ref().map(|token| TokenEntry {
        token: token.clone(),
        operation_id: record.operation.id.clone(),
        digest: record.request_digest.clone(),
        created_at: record.operation.created_at,
    })
}
