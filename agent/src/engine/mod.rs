//! The upgrade engine: accepts operations, runs their steps one at a time in a
//! background task, saves every change before acting on it, and keeps the node
//! view (phase, conditions, history) in step.
//!
//! # Layout
//!
//! - [`admission`]: field checks and version rules for a new upgrade.
//! - [`record`]: what is saved for each operation and for the node.
//! - [`runner`]: the step loop, failure handling, cancel and rollback.
//! - [`steps`]: each step's work against the host.
//! - [`recovery`]: what happens on start to operations a kill interrupted.
//! - [`crash`]: test-only crash points.
//!
//! Only one operation runs at a time; a second is refused with 409 while one runs.
//! The same request token always answers with the same operation.

pub mod admission;
pub mod crash;
pub mod record;
pub mod recovery;
pub mod runner;
pub mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use upkeep_common::api::{
    AcceptedRisk, Condition, ConditionStatus, ConditionType, DrainOptions, NodePhase, Operation, OperationKind,
    OperationPhase, StepStatus, UpgradeRequest,
};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role};

use crate::config::AgentConfig;
use crate::engine::admission::{NodeFacts, admit, check_fields};
use crate::engine::record::{ComponentPlan, NodeRecord, OperationRecord, initial_steps};
use crate::host::Host;
use crate::host::files::work_dir;
use crate::node::NodeView;
use crate::server::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How many finished operations are kept (in memory and on disk).
pub const KEPT_OPERATIONS: usize = 100;

/// The engine of one agent.
pub struct Engine {
    /// The agent's configuration.
    pub config: AgentConfig,
    /// The host it acts on.
    pub host: Host,
    store: Store,
    node: Arc<NodeView>,
    metrics: Arc<Metrics>,
    state: Mutex<EngineState>,
}

#[derive(Default)]
struct EngineState {
    operations: HashMap<OperationId, OperationRecord>,
    order: Vec<OperationId>,
    tokens: HashMap<RequestToken, OperationId>,
    current: Option<OperationId>,
    node: NodeRecord,
    cancels: HashMap<OperationId, watch::Sender<bool>>,
}

/// Why the engine could not start.
pub type OpenError = StoreError;

impl Engine {
    /// Loads saved state; call [`recovery::resume_interrupted`] next.
    pub fn open(
        config: AgentConfig,
        host: Host,
        store: Store,
        node: Arc<NodeView>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Engine>, OpenError> {
        let node_record: NodeRecord = store.load_node()?.unwrap_or_default();
        let mut records: Vec<OperationRecord> = store.load_operations()?;
        records.sort_by_key(|record| record.operation.created_at);
        let mut state = EngineState { node: node_record, ..EngineState::default() };
        for record in records {
            let id = record.operation.id.clone();
            if let Some(token) = &record.operation.request_token {
                state.tokens.insert(token.clone(), id.clone());
            }
            if !record.operation.phase.is_terminal() {
                state.current = Some(id.clone());
            }
            state.order.push(id.clone());
            state.operations.insert(id, record);
        }
        let engine = Arc::new(Engine { config, host, store, node, metrics, state: Mutex::new(state) });
        engine.publish(&engine.lock());
        Ok(engine)
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        self.lock().operations.get(id).cloned()
    }

    /// A copy of the node record.
    pub fn node_record(&self) -> NodeRecord {
        self.lock().node.clone()
    }

    /// The operation an upgrade request's token already names, if any.
    pub fn replayed_upgrade(&self, request: &UpgradeRequest) -> Result<Option<Operation>, ErrorBody> {
        let state = self.lock();
        self.replay(&state, request.request_token.as_ref(), &request_digest(request))
    }

    /// Starts an upgrade (or returns the operation its token already names).
    /// `control_plane` is the API server's version when the request carries none.
    pub fn submit_upgrade(
        self: &Arc<Self>,
        identity: &Identity,
        request: UpgradeRequest,
        if_match: Option<&str>,
        control_plane: Option<upkeep_common::Version>,
    ) -> Result<Operation, ErrorBody> {
        if request.force && !identity.allows(Role::Admin) {
            return Err(ErrorBody::new(ErrorCode::Forbidden, "force needs upkeep:admin"));
        }
        let forced_drain =
            request.drain.as_ref().and_then(|d| d.on_timeout) == Some(upkeep_common::api::DrainTimeoutAction::Force);
        if forced_drain && !identity.allows(Role::Admin) {
            return Err(ErrorBody::new(ErrorCode::Forbidden, "drain on_timeout force needs upkeep:admin"));
        }
        check_fields(&self.config, &request)?;
        let digest = request_digest(&request);
        let mut state = self.lock();
        if let Some(existing) = self.replay(&state, request.request_token.as_ref(), &digest)? {
            return Ok(existing);
        }
        self.check_precondition(if_match)?;
        self.check_idle(&state)?;
        let (node_state, _) = self.node.snapshot();
        let observed = |name: &str| {
            node_state.components.iter().find(|c| c.name.as_str() == name).and_then(|c| c.observed_version.clone())
        };
        let kept = state.node.previous.clone();
        let previous = |name: &str| kept.iter().find(|k| k.component.as_str() == name).map(|k| k.version.clone());
        let facts = NodeFacts {
            observed: &observed,
            previous: &previous,
            degraded: state.node.degraded.as_ref().map(|d| d.message.as_str()),
            control_plane: request.control_plane_version.clone().or(control_plane),
        };
        let admission = admit(&self.config, &request, &facts)?;
        let id = new_operation_id();
        let plan: Vec<ComponentPlan> = admission
            .components
            .iter()
            .map(|admitted| {
                let artifact = &request.artifacts[admitted.artifact];
                let dir = work_dir(&admitted.config.binary);
                let name = admitted.config.name.as_str();
                ComponentPlan {
                    name: admitted.config.name.clone(),
                    binary: admitted.config.binary.clone(),
                    staged: dir.join(format!("{name}.{}.staged", &artifact.sha256.as_str()[..16])),
                    backup: dir.join(format!("{name}.{id}.backup")),
                    source: artifact.source.clone(),
                    sha256: Some(artifact.sha256.clone()),
                    signature: artifact.signature.clone(),
                    from_version: admitted.from_version.clone(),
                    to_version: request.target_version.clone(),
                }
            })
            .collect();
        let from_version = request.artifacts.first().and_then(|artifact| observed(artifact.component.as_str()));
        let mut record = new_record(
            id,
            OperationKind::Upgrade,
            identity,
            request.request_token.clone(),
            digest,
            from_version,
            Some(request.target_version.clone()),
        );
        record.plan = plan;
        record.drain = request.drain.clone();
        record.force = request.force;
        record.operation.accepted_risks = admission.accepted_risks;
        record.operation.dry_run = request.dry_run;
        record.stage_only = request.stage_only;
        if let Some(step) = record.step_mut(upkeep_common::api::StepName::PreCheck) {
            step.message = admission.notes.join("; ");
        }
        if record.plan.is_empty() {
            finish_as_no_op(&mut record);
            return self.insert(&mut state, record, false);
        }
        self.insert(&mut state, record, true)
    }

    /// Starts a cordon, uncordon, drain or rollback (or returns the operation
    /// its token already names).
    pub fn submit_node_operation(
        self: &Arc<Self>,
        identity: &Identity,
        kind: OperationKind,
        token: Option<RequestToken>,
        drain: Option<DrainOptions>,
    ) -> Result<Operation, ErrorBody> {
        let digest = hex::encode(Sha256::digest(format!("{kind:?}{drain:?}").as_bytes()));
        let mut state = self.lock();
        if let Some(existing) = self.replay(&state, token.as_ref(), &digest)? {
            return Ok(existing);
        }
        self.check_idle(&state)?;
        let id = new_operation_id();
        let plan = match kind {
            OperationKind::Rollback => self.rollback_plan(&state, &id)?,
            _ => Vec::new(),
        };
        let from_version = plan.first().and_then(|p| p.from_version.clone());
        let target_version = plan.first().map(|p| p.to_version.clone());
        let mut record = new_record(id, kind, identity, token, digest, from_version, target_version);
        record.plan = plan;
        record.drain = drain;
        self.insert(&mut state, record, true)
    }

    fn rollback_plan(&self, state: &EngineState, id: &OperationId) -> Result<Vec<ComponentPlan>, ErrorBody> {
        if state.node.previous.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                "no previous completed version is kept on this node; nothing to roll back to",
            ));
        }
        let (node_state, _) = self.node.snapshot();
        let mut plan = Vec::new();
        for kept in &state.node.previous {
            let Some(component) = self.config.components.iter().find(|c| c.name == kept.component) else { continue };
            let observed = node_state
                .components
                .iter()
                .find(|c| c.name == kept.component)
                .and_then(|c| c.observed_version.clone());
            let dir = work_dir(&component.binary);
            plan.push(ComponentPlan {
                name: kept.component.clone(),
                binary: component.binary.clone(),
                staged: kept.path.clone(),
                backup: dir.join(format!("{}.{id}.backup", kept.component)),
                source: String::new(),
                sha256: Some(kept.sha256.clone()),
                signature: None,
                from_version: observed,
                to_version: kept.version.clone(),
            });
        }
        Ok(plan)
    }

    /// Asks an operation to stop: before the swap it aborts, after it rolls back.
    pub fn cancel(&self, id: &OperationId, identity: &Identity) -> Result<Operation, ErrorBody> {
        let mut state = self.lock();
        let record = state
            .operations
            .get_mut(id)
            .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no operation {id}")))?;
        if record.operation.phase.is_terminal() {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("operation {id} already ended as {:?}", record.operation.phase),
            ));
        }
        record.cancel_requested = true;
        let copy = record.clone();
        self.store.save_operation(id.as_str(), &copy).map_err(storage_error)?;
        if let Some(sender) = state.cancels.get(id) {
            let _ = sender.send(true);
        }
        tracing::info!(target: "audit", client = %identity, operation = %id, "cancel requested");
        Ok(copy.operation)
    }

    fn replay(
        &self,
        state: &EngineState,
        token: Option<&RequestToken>,
        digest: &str,
    ) -> Result<Option<Operation>, ErrorBody> {
        let Some(token) = token else { return Ok(None) };
        let Some(id) = state.tokens.get(token) else { return Ok(None) };
        let Some(record) = state.operations.get(id) else { return Ok(None) };
        if record.request_digest != digest {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("request token {token} was used for a different request (operation {id})"),
            ));
        }
        Ok(Some(record.operation.clone()))
    }

    fn check_precondition(&self, if_match: Option<&str>) -> Result<(), ErrorBody> {
        match if_match {
            Some(value) if !self.node.etag().matches_if_match(value) => Err(ErrorBody::new(
                ErrorCode::PreconditionFailed,
                "If-Match does not match the node's current ETag; read GET /v1/node again",
            )),
            _ => Ok(()),
        }
    }

    fn check_idle(&self, state: &EngineState) -> Result<(), ErrorBody> {
        match &state.current {
            Some(current) => Err(ErrorBody::new(
                ErrorCode::OperationInProgress,
                format!("operation {current} is running; wait for it or cancel it"),
            )),
            None => Ok(()),
        }
    }

    /// Saves a new record, registers it, and starts its runner when asked.
    fn insert(
        self: &Arc<Self>,
        state: &mut EngineState,
        record: OperationRecord,
        run: bool,
    ) -> Result<Operation, ErrorBody> {
        let id = record.operation.id.clone();
        self.store.save_operation(id.as_str(), &record).map_err(storage_error)?;
        if let Some(token) = &record.operation.request_token {
            state.tokens.insert(token.clone(), id.clone());
        }
        let operation = record.operation.clone();
        if record.operation.phase.is_terminal() {
            self.metrics.record_operation(record.operation.kind, record.operation.phase);
        }
        state.order.push(id.clone());
        state.operations.insert(id.clone(), record);
        self.prune(state);
        if run {
            state.current = Some(id.clone());
            self.spawn_runner(state, id);
        }
        self.publish(state);
        Ok(operation)
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

    fn spawn_runner(self: &Arc<Self>, state: &mut EngineState, id: OperationId) {
        let (sender, receiver) = watch::channel(state.operations.get(&id).is_some_and(|r| r.cancel_requested));
        state.cancels.insert(id.clone(), sender);
        tokio::spawn(runner::run(self.clone(), id, receiver));
    }

    fn prune(&self, state: &mut EngineState) {
        while state.order.len() > KEPT_OPERATIONS {
            let Some(position) = state
                .order
                .iter()
                .position(|id| state.operations.get(id).is_none_or(|r| r.operation.phase.is_terminal()))
            else {
                break;
            };
            let id = state.order.remove(position);
            if let Some(record) = state.operations.remove(&id) {
                if let Some(token) = &record.operation.request_token {
                    state.tokens.remove(token);
                }
            }
            if let Err(error) = self.store.remove_operation(id.as_str()) {
                tracing::warn!(%error, "could not remove an old operation");
            }
        }
    }

    /// Applies a change to an operation's record and saves it before returning.
    pub fn update(
        &self,
        id: &OperationId,
        change: impl FnOnce(&mut OperationRecord),
    ) -> Result<OperationRecord, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.operations.get_mut(id) else {
            return Err(StoreError::Corrupt { path: id.as_str().into(), reason: "operation vanished".into() });
        };
        change(record);
        let copy = record.clone();
        self.store.save_operation(id.as_str(), &copy)?;
        if copy.operation.phase.is_terminal() {
            if state.current.as_ref() == Some(id) {
                state.current = None;
            }
            state.cancels.remove(id);
            self.metrics.record_operation(copy.operation.kind, copy.operation.phase);
        }
        self.publish(&state);
        Ok(copy)
    }

    /// Applies a change to the node record and saves it before returning.
    pub fn update_node(&self, change: impl FnOnce(&mut NodeRecord)) -> Result<(), StoreError> {
        let mut state = self.lock();
        change(&mut state.node);
        self.store.save_node(&state.node)?;
        self.publish(&state);
        Ok(())
    }

    /// Records a step's duration.
    pub fn observe_step(&self, step: upkeep_common::api::StepName, seconds: f64) {
        self.metrics.observe_step(step, seconds);
    }

    /// Runs the version commands now and updates the node view.
    pub async fn refresh_versions(&self) {
        crate::refresh::probe_versions(&self.config, &self.host, &self.node, &self.metrics).await;
    }

    /// Copies the engine's state into the node view.
    fn publish(&self, state: &EngineState) {
        let now = Utc::now();
        let current = state.current.as_ref().and_then(|id| state.operations.get(id));
        self.node.update(|view| {
            view.cordoned = state.node.cordoned;
            view.current_operation = state.current.clone();
            view.history = state.node.history.clone();
            view.phase = match (current, &state.node.degraded) {
                (Some(_), _) => NodePhase::Upgrading,
                (None, Some(_)) => NodePhase::Degraded,
                (None, None) => NodePhase::Idle,
            };
            for component in &mut view.components {
                component.desired_version = current
                    .and_then(|record| record.plan.iter().find(|p| p.name == component.name))
                    .map(|p| p.to_version.clone());
            }
            match current {
                Some(record) => Condition::set(
                    &mut view.conditions,
                    ConditionType::Progressing,
                    ConditionStatus::True,
                    "OperationRunning",
                    &format!("{:?} {} is running", record.operation.kind, record.operation.id),
                    now,
                ),
                None => Condition::set(
                    &mut view.conditions,
                    ConditionType::Progressing,
                    ConditionStatus::False,
                    "NoOperation",
                    "",
                    now,
                ),
            }
            match &state.node.degraded {
                Some(degraded) => Condition::set(
                    &mut view.conditions,
                    ConditionType::Degraded,
                    ConditionStatus::True,
                    &degraded.reason,
                    &degraded.message,
                    degraded.since,
                ),
                None => Condition::set(
                    &mut view.conditions,
                    ConditionType::Degraded,
                    ConditionStatus::False,
                    "Healthy",
                    "",
                    now,
                ),
            }
        });
    }
}

fn new_operation_id() -> OperationId {
    let suffix: u32 = rand::rng().random();
    let id = format!("op-{}-{suffix:08x}", Utc::now().format("%Y%m%dT%H%M%S%3f"));
    id.parse().expect("operation ids are made of letters, digits and '-'")
}

fn request_digest(request: &UpgradeRequest) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(request).unwrap_or_default()))
}

fn storage_error(error: StoreError) -> ErrorBody {
    tracing::error!(%error, "state could not be saved");
    ErrorBody::new(ErrorCode::DependencyUnavailable, format!("the agent could not save its state: {error}"))
}

fn new_record(
    id: OperationId,
    kind: OperationKind,
    identity: &Identity,
    token: Option<RequestToken>,
    request_digest: String,
    from_version: Option<upkeep_common::Version>,
    target_version: Option<upkeep_common::Version>,
) -> OperationRecord {
    OperationRecord {
        operation: Operation {
            id,
            request_token: token,
            kind,
            from_version,
            target_version,
            phase: OperationPhase::Pending,
            steps: initial_steps(kind),
            errors: Vec::new(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            requested_by: identity.to_string(),
            accepted_risks: Vec::<AcceptedRisk>::new(),
            dry_run: false,
            no_op: false,
        },
        request_digest,
        plan: Vec::new(),
        drain: None,
        force: false,
        cordoned_by_us: false,
        was_cordoned: false,
        rolling_back: false,
        cancel_requested: false,
        verified: false,
        stage_only: false,
    }
}

fn finish_as_no_op(record: &mut OperationRecord) {
    let now = Utc::now();
    let target = record.operation.target_version.clone().map(|v| v.to_string()).unwrap_or_default();
    record.operation.no_op = true;
    record.operation.phase = OperationPhase::Succeeded;
    record.operation.started_at = Some(now);
    record.operation.finished_at = Some(now);
    for step in &mut record.operation.steps {
        step.status = StepStatus::Skipped;
        step.started_at = Some(now);
        step.finished_at = Some(now);
        step.message = format!("already at {target}: nothing to do");
    }
}
