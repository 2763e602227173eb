//! Starting an update: an upgrade (from `POST .../upgrade` or a `PATCH` of
//! the desired version) or a rollback of an ended update. The same request
//! token answers with the update it started; a stale `If-Match` is a 412; a
//! running update is a 409 that names it. The update, its token, the spec and
//! the running mark are stored in one batch before its workflow starts.

use std::sync::Arc;

use chrono::Utc;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use upkeep_common::ids::RequestToken;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Identity, Role, Version};
use upkeep_net::response::{self, Body};
use upkeep_net::routing::forbidden;

use crate::catalog::Catalog;
use crate::control::Control;
use crate::store::Batch;

use super::admission::{AdmissionInput, UpgradeBody, admit};
use super::app::ServiceApp;
use super::cluster::{ClusterRuntime, ClusterState};
use super::handlers::{find_update, unavailable};
use super::model::{Update, UpdateType};
use super::nodes::NodeView;
use super::records::Records;
use super::rollback::{RollbackInput, admit_rollback};

/// The body of `POST .../updates/{id}/rollback`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Lets a control plane that moved a minor go back (recorded as an accepted risk).
    #[serde(default)]
    pub force: bool,
    /// The same token always answers with the same update.
    #[serde(default)]
    pub request_token: Option<RequestToken>,
}

/// What an admission on `cluster` is given, with a new update id (its
/// creation time, then random digits).
fn admission_input<'a>(
    cluster: &'a ClusterRuntime,
    catalog: &'a Catalog,
    nodes: &'a [NodeView],
    identity: &'a Identity,
) -> AdmissionInput<'a> {
    let now = Utc::now();
    let suffix: u32 = rand::random();
    AdmissionInput {
        cluster: cluster.name(),
        policy: &cluster.config.policy,
        catalog,
        nodes,
        identity,
        id: format!("u{}-{suffix:08x}", now.format("%Y%m%d%H%M%S")),
        now,
    }
}

/// Checks that may refuse any start: the token's earlier update (answered as
/// is), a stale `If-Match`, a running update.
async fn precondition(
    cluster: &ClusterRuntime,
    state: &ClusterState,
    token: Option<&RequestToken>,
    if_match: Option<&str>,
) -> Result<Option<String>, ErrorBody> {
    if let Some(token) = token {
        let earlier = cluster.records.token(cluster.name(), token.as_str()).await.map_err(|e| unavailable(&e))?;
        if earlier.is_some() {
            return Ok(earlier);
        }
    }
    if let Some(tag) = if_match
        && tag != "*"
        && tag != state.spec.etag()
    {
        return Err(ErrorBody::new(
            ErrorCode::PreconditionFailed,
            format!("If-Match {tag} does not match the cluster's spec {}", state.spec.etag()),
        ));
    }
    if let Some(running) = &state.running {
        let id = running.log.update().id;
        return Err(ErrorBody::with_details(
            ErrorCode::UpdateInProgress,
            format!("update {id} is running on cluster {}; wait for it, or cancel it", cluster.name()),
            vec![ErrorDetail::new("update", "update_in_progress", id)],
        ));
    }
    Ok(None)
}

/// Starts an upgrade (or answers with the one its token already started).
pub async fn start_update(
    app: &Arc<ServiceApp>,
    cluster: &Arc<ClusterRuntime>,
    identity: &Identity,
    body: UpgradeBody,
    if_match: Option<&str>,
) -> Result<Response<Body>, ErrorBody> {
    let mut state = cluster.state.lock().await;
    if let Some(earlier) = precondition(cluster, &state, body.request_token.as_ref(), if_match).await? {
        drop(state);
        return Ok(accepted(cluster, &find_update(cluster, Some(&earlier)).await?));
    }
    let catalog = cluster.catalog();
    let nodes = cluster.nodes();
    let update = admit(&body, admission_input(cluster, &catalog, &nodes, identity))?;
    launch(app, cluster, &mut state, identity, update, !body.dry_run).await
}

/// Rolls back the ended update `id` (or answers with the rollback its token already started).
pub async fn start_rollback(
    app: &Arc<ServiceApp>,
    cluster: &Arc<ClusterRuntime>,
    identity: &Identity,
    id: Option<&str>,
    body: RollbackBody,
    if_match: Option<&str>,
) -> Result<Response<Body>, ErrorBody> {
    let original = find_update(cluster, id).await?;
    let mut state = cluster.state.lock().await;
    if let Some(earlier) = precondition(cluster, &state, body.request_token.as_ref(), if_match).await? {
        drop(state);
        return Ok(accepted(cluster, &find_update(cluster, Some(&earlier)).await?));
    }
    let records = &cluster.records;
    let journal = match records.journal(cluster.name(), &original.id).load().await {
        Ok(journal) => journal,
        Err(_) => {
            let message = format!("update {} never reached its upgrade: there is nothing to roll back", original.id);
            return Err(ErrorBody::new(ErrorCode::ValidationFailed, message));
        }
    };
    let before = records.nodes_before(cluster.name(), &original.id).await.map_err(|e| unavailable(&e))?;
    let catalog = cluster.catalog();
    let nodes = cluster.nodes();
    let update = admit_rollback(RollbackInput {
        original: &original,
        journal: &journal,
        before: &before.unwrap_or_default(),
        roles: &cluster.roles,
        catalog: &catalog,
        policy: &cluster.config.policy,
        force: body.force,
        request_token: body.request_token.as_ref().map(|t| t.as_str().to_owned()),
        input: admission_input(cluster, &catalog, &nodes, identity),
    })?;
    launch(app, cluster, &mut state, identity, update, true).await
}

/// The update a `PATCH` to `version` rolls back: the last one, when it ended
/// and `version` is the one its nodes were on before it.
pub async fn rollback_target(cluster: &ClusterRuntime, version: &Version) -> Option<String> {
    let last = cluster.state.lock().await.last.clone()?;
    if last.kind != UpdateType::VersionUpdate || !last.status.is_final() || version >= &last.target_version {
        return None;
    }
    let before = cluster.records.nodes_before(cluster.name(), &last.id).await.ok()??;
    before.version.values().flatten().any(|previous| previous == version).then_some(last.id)
}

/// Whether `identity` may roll back on `cluster` (admin).
pub fn may_roll_back(identity: &Identity, cluster: &str) -> Result<(), ErrorBody> {
    if identity.allows_on(Role::Admin, cluster) {
        return Ok(());
    }
    Err(forbidden(identity, Role::Admin, &format!(" on cluster {cluster} to roll back")))
}

/// Stores `update` (its token, the running mark and, when `set_spec`, the
/// desired version) in one batch, then starts its workflow.
async fn launch(
    app: &Arc<ServiceApp>,
    cluster: &Arc<ClusterRuntime>,
    state: &mut ClusterState,
    identity: &Identity,
    update: Update,
    set_spec: bool,
) -> Result<Response<Body>, ErrorBody> {
    let mut spec = state.spec.clone();
    if set_spec {
        spec.version = Some(update.target_version.clone());
        spec.generation += 1;
    }
    let mut batch = Batch::new();
    Records::put_update(&mut batch, &update);
    Records::put_current(&mut batch, cluster.name(), Some(&update.id));
    Records::put_spec(&mut batch, cluster.name(), &spec);
    if let Some(token) = &update.request_token {
        Records::put_token(&mut batch, cluster.name(), token, &update.id);
    }
    cluster.records.store().commit(batch).await.map_err(|e| unavailable(&e))?;
    tracing::info!(target: "audit", client = %identity, cluster = cluster.name(), update = %update.id,
        kind = ?update.kind, target = %update.target_version, force = update.force, "update accepted");
    state.observed_generation = spec.generation;
    state.spec = spec;
    app.metrics.update_started();
    app.launch(cluster, state, update.clone(), 0, Control::Run);
    Ok(accepted(cluster, &update))
}

/// 202 with the update (new, or the one the token started).
fn accepted(cluster: &ClusterRuntime, update: &Update) -> Response<Body> {
    response::json(StatusCode::ACCEPTED, &serde_json::json!({ "cluster": cluster.name(), "update": update }))
}
