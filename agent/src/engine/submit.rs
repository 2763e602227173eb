//! Accepting new operations: role and field checks, request-token replay,
//! the one-at-a-time rule, saving the new record and starting its runner; and
//! the cancel of a running one. Old operations leave the recent list here, and
//! their tokens move to the durable token index.

use std::sync::Arc;

use chrono::Utc;
use upkeep_common::api::{
    DrainOptions, DrainTimeoutAction, Operation, OperationKind, StepName, UpgradeRequest, bounds, canonical,
};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role, Version};

use crate::engine::admission::{NodeFacts, admit, check_fields};
use crate::engine::build::{self, NewRecord};
use crate::engine::record::OperationRecord;
use crate::engine::tokens::{self, ArchivedToken, archive_key};
use crate::engine::{Engine, EngineState, KEPT_OPERATIONS, token_entry};
use crate::store::StoreError;

impl Engine {
    /// The operation an upgrade request's token already names, if any.
    pub fn replayed_upgrade(&self, request: &UpgradeRequest) -> Result<Option<Operation>, ErrorBody> {
        let digest = tokens::request_digest(&canonical::upgrade_text(request));
        self.replay(request.request_token.as_ref(), &digest)
    }

    /// Starts an upgrade (or returns the operation its token already names).
    /// `reported_control_plane` is the API server's version, when it was asked.
    pub fn submit_upgrade(
        self: &Arc<Self>,
        identity: &Identity,
        request: UpgradeRequest,
        if_match: Option<&str>,
        reported_control_plane: Option<Version>,
    ) -> Result<Operation, ErrorBody> {
        if request.force && !identity.allows(Role::Admin) {
            return Err(ErrorBody::new(ErrorCode::Forbidden, "force needs upkeep:admin"));
        }
        let forced_drain = request.drain.as_ref().and_then(|d| d.on_timeout) == Some(DrainTimeoutAction::Force);
        if forced_drain && !identity.allows(Role::Admin) {
            return Err(ErrorBody::new(ErrorCode::Forbidden, "drain on_timeout force needs upkeep:admin"));
        }
        check_fields(&self.config, &request)?;
        let digest = tokens::request_digest(&canonical::upgrade_text(&request));
        let _writer = self.writer();
        if let Some(existing) = self.replay(request.request_token.as_ref(), &digest)? {
            return Ok(existing);
        }
        self.check_precondition(if_match)?;
        let node = self.check_idle()?;
        let (node_state, _) = self.node.snapshot();
        let observed = |name: &str| {
            node_state.components.iter().find(|c| c.name.as_str() == name).and_then(|c| c.observed_version.clone())
        };
        let previous =
            |name: &str| node.previous.iter().find(|k| k.component.as_str() == name).map(|k| k.version.clone());
        let facts = NodeFacts {
            observed: &observed,
            previous: &previous,
            degraded: node.degraded.as_ref().map(|d| d.message.as_str()),
            reported_control_plane,
        };
        let admission = admit(&self.config, &request, &facts)?;
        let now = Utc::now();
        let id = build::new_operation_id(now);
        let from_version = request.artifacts.first().and_then(|artifact| observed(artifact.component.as_str()));
        let mut record = build::new_record(NewRecord {
            id: id.clone(),
            kind: OperationKind::Upgrade,
            identity,
            token: request.request_token.clone(),
            request_digest: digest,
            from_version,
            target_version: Some(request.target_version.clone()),
            now,
        });
        record.plan = build::upgrade_plan(&id, &request, &admission);
        record.drain = request.drain.clone();
        record.force = request.force;
        record.operation.accepted_risks = admission.accepted_risks;
        record.operation.dry_run = request.dry_run;
        record.stage_only = request.stage_only;
        if let Some(step) = record.step_mut(StepName::PreCheck) {
            step.message = admission.notes.join("; ");
        }
        if record.plan.is_empty() {
            build::finish_as_no_op(&mut record, now);
            return self.insert(record, false);
        }
        self.insert(record, true)
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
        if let Some(options) = &drain {
            let problems = bounds::drain_problems(options, "drain");
            if !problems.is_empty() {
                return Err(ErrorBody::with_details(
                    ErrorCode::ValidationFailed,
                    "the drain request has invalid fields",
                    problems,
                ));
            }
        }
        let digest = tokens::request_digest(&canonical::node_operation_text(kind, drain.as_ref()));
        let _writer = self.writer();
        if let Some(existing) = self.replay(token.as_ref(), &digest)? {
            return Ok(existing);
        }
        let node = self.check_idle()?;
        let now = Utc::now();
        let id = build::new_operation_id(now);
        let plan = match kind {
            OperationKind::Rollback => {
                if node.previous.is_empty() {
                    return Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        "no previous completed version is kept on this node; nothing to roll back to",
                    ));
                }
                let (node_state, _) = self.node.snapshot();
                let observed = |component: &crate::config::ComponentConfig| {
                    node_state
                        .components
                        .iter()
                        .find(|c| c.name == component.name)
                        .and_then(|c| c.observed_version.clone())
                };
                build::rollback_plan(&id, &node.previous, &self.config.components, &observed)
            }
            _ => Vec::new(),
        };
        let mut record = build::new_record(NewRecord {
            id,
            kind,
            identity,
            token,
            request_digest: digest,
            from_version: plan.first().and_then(|p| p.from_version.clone()),
            target_version: plan.first().map(|p| p.to_version.clone()),
            now,
        });
        record.plan = plan;
        record.drain = drain;
        self.insert(record, true)
    }

    /// Asks an operation to stop: before the swap it aborts, after it rolls back.
    pub fn cancel(&self, id: &OperationId, identity: &Identity) -> Result<Operation, ErrorBody> {
        let _writer = self.writer();
        let record =
            self.record(id).ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, format!("no operation {id}")))?;
        if record.operation.phase.is_terminal() {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("operation {id} already ended as {:?}", record.operation.phase),
            ));
        }
        let mut record = record;
        record.cancel_requested = true;
        self.save_operation(id, &record).map_err(storage_error)?;
        let mut state = self.lock();
        state.operations.insert(id.clone(), Box::new(record.clone()));
        if let Some(sender) = state.cancels.get(id) {
            let _ = sender.send(true);
        }
        tracing::info!(target: "audit", client = %identity, operation = %id, "cancel requested");
        Ok(record.operation)
    }

    /// The operation `token` already names, or 409 when it came with another request.
    fn replay(&self, token: Option<&RequestToken>, digest: &str) -> Result<Option<Operation>, ErrorBody> {
        let Some(token) = token else { return Ok(None) };
        let (entry, live) = {
            let state = self.lock();
            let Some(entry) = state.tokens.get(token).cloned() else { return Ok(None) };
            let live = state.operations.get(&entry.operation_id).map(|r| r.operation.clone());
            (entry, live)
        };
        if !tokens::same_request(&entry.digest, digest) {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("request token {token} was used for a different request (operation {})", entry.operation_id),
            ));
        }
        if let Some(operation) = live {
            return Ok(Some(operation));
        }
        match self.store.load_token::<ArchivedToken>(&archive_key(token)) {
            Ok(Some(archived)) => Ok(Some(archived.operation)),
            Ok(None) => Err(ErrorBody::new(
                ErrorCode::DependencyUnavailable,
                format!("request token {token} names operation {}, whose record is missing", entry.operation_id),
            )),
            Err(error) => Err(storage_error(error)),
        }
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

    /// Refuses while an operation runs; otherwise a copy of the node record.
    fn check_idle(&self) -> Result<crate::engine::record::NodeRecord, ErrorBody> {
        let state = self.lock();
        match &state.current {
            Some(current) => Err(ErrorBody::new(
                ErrorCode::OperationInProgress,
                format!("operation {current} is running; wait for it or cancel it"),
            )),
            None => Ok(state.node.clone()),
        }
    }

    /// Saves a new record, registers it, prunes the recent list and starts the
    /// runner when asked. The caller holds the writer lock.
    fn insert(self: &Arc<Self>, record: OperationRecord, run: bool) -> Result<Operation, ErrorBody> {
        let id = record.operation.id.clone();
        self.save_operation(&id, &record).map_err(storage_error)?;
        let operation = record.operation.clone();
        if record.operation.phase.is_terminal() {
            self.metrics.record_operation(record.operation.kind, record.operation.phase);
        }
        let mut state = self.lock();
        if let Some(entry) = token_entry(&record) {
            state.tokens.insert(entry);
        }
        state.order.push(id.clone());
        state.operations.insert(id.clone(), Box::new(record));
        let pruned = prunable(&state);
        let expired = state.tokens.expired(Utc::now());
        drop(state);
        let archived = self.archive(&pruned, &expired);
        let mut state = self.lock();
        forget(&mut state, &archived, &expired);
        if run {
            state.current = Some(id.clone());
            self.spawn_runner(&mut state, id);
        }
        self.publish(&state);
        Ok(operation)
    }

    /// Moves pruned operations out of the recent list on disk (their tokens into
    /// the archive first) and removes expired tokens; returns the ids whose
    /// records left. Runs without the state lock.
    fn archive(&self, pruned: &[OperationRecord], expired: &[RequestToken]) -> Vec<OperationId> {
        let mut archived = Vec::new();
        for record in pruned {
            let id = &record.operation.id;
            let kept = match token_entry(record) {
                Some(entry) => {
                    let key = archive_key(&entry.token);
                    let archived = ArchivedToken { entry, operation: record.operation.clone() };
                    self.store.save_token(&key, &archived).inspect(|()| self.metrics.record_state_write("token"))
                }
                None => Ok(()),
            };
            match kept.and_then(|()| self.store.remove_operation(id.as_str())) {
                Ok(()) => archived.push(id.clone()),
                Err(error) => log_store_error(&error, "could not move an old operation out of the recent list"),
            }
        }
        for token in expired {
            if let Err(error) = self.store.remove_token(&archive_key(token)) {
                log_store_error(&error, "could not remove an expired request token");
            }
        }
        archived
    }
}

/// The ended operations beyond [`KEPT_OPERATIONS`], oldest first.
fn prunable(state: &EngineState) -> Vec<OperationRecord> {
    let excess = state.order.len().saturating_sub(KEPT_OPERATIONS);
    state
        .order
        .iter()
        .filter_map(|id| state.operations.get(id))
        .filter(|record| record.operation.phase.is_terminal())
        .take(excess)
        .map(|record| OperationRecord::clone(record))
        .collect()
}

fn forget(state: &mut EngineState, archived: &[OperationId], expired: &[RequestToken]) {
    for id in archived {
        state.operations.remove(id);
        state.order.retain(|kept| kept != id);
    }
    for token in expired {
        let archived_only = state.tokens.get(token).is_some_and(|e| !state.operations.contains_key(&e.operation_id));
        if archived_only {
            state.tokens.remove(token);
        }
    }
}

fn log_store_error(error: &StoreError, what: &str) {
    tracing::warn!(%error, "{what}");
}

fn storage_error(error: StoreError) -> ErrorBody {
    tracing::error!(%error, "state could not be saved");
    ErrorBody::new(ErrorCode::DependencyUnavailable, format!("the agent could not save its state: {error}"))
}
