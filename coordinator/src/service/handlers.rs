//! What each route of the service's API does, on one cluster.

use std::sync::Arc;

use chrono::Utc;
use hyper::header::{ETAG, HeaderValue, IF_MATCH};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role};
use upkeep_net::body::{BodyPresence, RequestBody, read_json, read_json_as};
use upkeep_net::response::{self, Body};

use crate::control::Control;
use crate::journal::JournalNode;
use crate::store::StoreError;

use super::admission::UpgradeBody;
use super::api::Endpoint;
use super::app::ServiceApp;
use super::cluster::ClusterRuntime;
use super::events;
use super::model::Update;
use super::starting::{self, RollbackBody};
use super::view::{ClusterView, ViewInput, cluster_view};

/// The most updates a list answers with (the newest).
const MAX_LISTED: usize = 100;
/// The longest update id accepted in a path.
const MAX_ID: usize = 64;

pub(super) fn unavailable(error: &StoreError) -> ErrorBody {
    tracing::error!(%error, "the store failed");
    ErrorBody::new(ErrorCode::DependencyUnavailable, format!("the service's store failed: {error}"))
}

/// `GET /v1/clusters`: the clusters the caller may read, without history.
pub async fn list_clusters(app: &Arc<ServiceApp>, identity: &Identity) -> Result<Response<Body>, ErrorBody> {
    let mut clusters = Vec::new();
    for cluster in app.clusters.values() {
        if identity.allows_on(Role::Reader, cluster.name()) {
            clusters.push(view(app, cluster, false).await?);
        }
    }
    Ok(response::json(StatusCode::OK, &serde_json::json!({ "clusters": clusters })))
}

/// Serves a route on `cluster`; `id` is the update in the path, if any.
pub async fn dispatch(
    app: &Arc<ServiceApp>,
    cluster: &Arc<ClusterRuntime>,
    identity: &Identity,
    endpoint: Endpoint,
    id: Option<&str>,
    request: Request<RequestBody>,
) -> Result<Response<Body>, ErrorBody> {
    match endpoint {
        Endpoint::GetCluster => {
            let view = view(app, cluster, true).await?;
            let mut response = response::json(StatusCode::OK, &view);
            if let Ok(tag) = HeaderValue::from_str(&view.spec.etag()) {
                response.headers_mut().insert(ETAG, tag);
            }
            Ok(response)
        }
        Endpoint::PatchCluster => {
            let if_match = if_match(&request)?;
            let patch: VersionPatch =
                read_json_as(request, BodyPresence::Required, &["application/merge-patch+json", "application/json"])
                    .await?;
            if let Ok(version) = patch.version.parse::<upkeep_common::Version>()
                && let Some(last) = starting::rollback_target(cluster, &version).await
            {
                starting::may_roll_back(identity, cluster.name())?;
                let body = RollbackBody::default();
                return starting::start_rollback(app, cluster, identity, Some(&last), body, if_match.as_deref()).await;
            }
            let body = UpgradeBody {
                target_version: patch.version,
                request_token: None,
                force: false,
                dry_run: false,
                policy: None,
                accept_risks: Vec::new(),
            };
            starting::start_update(app, cluster, identity, body, if_match.as_deref()).await
        }
        Endpoint::Upgrade => {
            let if_match = if_match(&request)?;
            let body: UpgradeBody = read_json(request, BodyPresence::Required).await?;
            starting::start_update(app, cluster, identity, body, if_match.as_deref()).await
        }
        Endpoint::Rollback => {
            let if_match = if_match(&request)?;
            let body: RollbackBody = read_json(request, BodyPresence::Optional).await?;
            starting::start_rollback(app, cluster, identity, id, body, if_match.as_deref()).await
        }
        Endpoint::ListUpdates => {
            let mut updates = cluster.records.updates(cluster.name()).await.map_err(|e| unavailable(&e))?;
            if let Some(running) = running_update(cluster).await
                && let Some(stored) = updates.iter_mut().find(|u| u.id == running.id)
            {
                *stored = running;
            }
            updates.reverse();
            updates.truncate(MAX_LISTED);
            Ok(response::json(StatusCode::OK, &serde_json::json!({ "updates": updates })))
        }
        Endpoint::GetUpdate => {
            let update = find_update(cluster, id).await?;
            let journal = cluster.records.journal(cluster.name(), &update.id).load().await.ok();
            let nodes: Vec<NodeOutcome> =
                journal.map(|j| j.nodes.iter().map(NodeOutcome::of).collect()).unwrap_or_default();
            Ok(response::json(StatusCode::OK, &UpdateWithNodes { update, nodes }))
        }
        Endpoint::Pause | Endpoint::Resume | Endpoint::Cancel => {
            let _: serde_json::Map<String, serde_json::Value> = read_json(request, BodyPresence::Optional).await?;
            let control = match endpoint {
                Endpoint::Pause => Control::Pause,
                Endpoint::Resume => Control::Run,
                _ => Control::Abort,
            };
            steer(cluster, identity, id, control).await
        }
        Endpoint::Events => {
            let from = events::parse_from(request.uri().query())?;
            let update = find_update(cluster, id).await?;
            Ok(events::stream(cluster.clone(), update.id, from))
        }
        Endpoint::Nodes => Ok(response::json(StatusCode::OK, &serde_json::json!({ "nodes": cluster.nodes() }))),
        Endpoint::Healthz | Endpoint::Readyz | Endpoint::Metrics | Endpoint::ListClusters => {
            Err(ErrorBody::new(ErrorCode::Internal, "route dispatched to the wrong handler"))
        }
    }
}

/// The merge patch `PATCH /v1/clusters/{cluster}` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionPatch {
    version: String,
}

/// An update with each node's outcome, as `GET .../updates/{id}` answers.
#[derive(Serialize)]
struct UpdateWithNodes {
    #[serde(flatten)]
    update: Update,
    nodes: Vec<NodeOutcome>,
}

/// One node's outcome in an update.
#[derive(Serialize)]
struct NodeOutcome {
    name: String,
    status: crate::plan::NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<crate::journal::NodeError>,
}

impl NodeOutcome {
    fn of(node: &JournalNode) -> NodeOutcome {
        NodeOutcome { name: node.name.to_string(), status: node.status, error: node.error.clone() }
    }
}

/// The `If-Match` header, when given; an empty or unprintable one is malformed.
fn if_match(request: &Request<RequestBody>) -> Result<Option<String>, ErrorBody> {
    let Some(value) = request.headers().get(IF_MATCH) else { return Ok(None) };
    match value.to_str().map(str::trim) {
        Ok(tag) if !tag.is_empty() => Ok(Some(tag.to_owned())),
        _ => Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            "If-Match must be an entity tag, such as \"d43fa645a30845cc\"",
        )),
    }
}

/// The cluster's view.
async fn view(app: &ServiceApp, cluster: &ClusterRuntime, with_history: bool) -> Result<ClusterView, ErrorBody> {
    let history = match with_history {
        true => Some(cluster.records.history(cluster.name()).await.map_err(|e| unavailable(&e))?),
        false => None,
    };
    let catalog = cluster.catalog();
    let mut state = cluster.state.lock().await;
    let running = state.running.as_ref().map(|r| r.log.update());
    let update = running.as_ref().or(state.last.as_ref());
    let view = cluster.with_nodes(|nodes| {
        cluster_view(ViewInput {
            name: cluster.name(),
            spec: &state.spec,
            observed_generation: state.observed_generation,
            update,
            nodes,
            history: history.as_deref(),
            catalog: &catalog,
            conditions: &state.conditions,
            replica: &app.replica,
            now: Utc::now(),
        })
    });
    state.conditions.clone_from(&view.conditions);
    Ok(view)
}

async fn running_update(cluster: &ClusterRuntime) -> Option<Update> {
    cluster.state.lock().await.running.as_ref().map(|r| r.log.update())
}

/// The update named in the path: the running one as it is now, else as stored.
pub(super) async fn find_update(cluster: &ClusterRuntime, id: Option<&str>) -> Result<Update, ErrorBody> {
    let id = id.unwrap_or_default();
    let not_found = || {
        ErrorBody::new(
            ErrorCode::NotFound,
            format!("cluster {} has no update {}", cluster.name(), upkeep_net::log::Escaped(id)),
        )
    };
    if id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(not_found());
    }
    if let Some(running) = running_update(cluster).await.filter(|u| u.id == id) {
        return Ok(running);
    }
    cluster.records.update(cluster.name(), id).await.map_err(|e| unavailable(&e))?.ok_or_else(not_found)
}

/// Pauses, resumes or cancels the running update `id`.
async fn steer(
    cluster: &ClusterRuntime,
    identity: &Identity,
    id: Option<&str>,
    control: Control,
) -> Result<Response<Body>, ErrorBody> {
    let update = find_update(cluster, id).await?;
    let state = cluster.state.lock().await;
    let running = state.running.as_ref().filter(|r| r.log.update().id == update.id);
    let Some(running) = running else {
        return Err(ErrorBody::new(
            ErrorCode::Conflict,
            format!(
                "update {} has ended ({:?}); only a running update is paused, resumed or cancelled",
                update.id, update.status
            ),
        ));
    };
    if *running.control.borrow() == Control::Abort {
        return Err(ErrorBody::new(ErrorCode::Conflict, format!("update {} is being cancelled", update.id)));
    }
    running.control.send_replace(control);
    tracing::info!(target: "audit", client = %identity, update = %update.id, asked = ?control, "update steered");
    Ok(response::json(StatusCode::OK, &running.log.update()))
}
