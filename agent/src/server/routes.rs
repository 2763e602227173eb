//! The agent API's routes and the one place that turns a request into a response.
//!
//! | method | path | role |
//! |---|---|---|
//! | GET | `/healthz` | any client certificate from the trusted CA |
//! | GET | `/metrics` | reader |
//! | GET | `/v1/node` | reader |
//! | GET | `/v1/operations` | reader |
//! | GET | `/v1/operations/{id}` (`?wait=SECONDS&after=PHASE`: see [`super::wait`]) | reader |
//! | POST | `/v1/upgrades` (`Prefer: wait=SECONDS`: see [`super::wait`]) | operator (`force`: admin) |
//! | POST | `/v1/operations/{id}/cancel` | operator |
//! | POST | `/v1/rollback` | admin |
//! | POST | `/v1/cordon`, `/v1/uncordon`, `/v1/drain` | operator |
//! | POST | `/v1/etcd/snapshot` (see [`super::etcd`]) | operator |
//! | GET | `/v1/etcd/health` | reader |
//! | GET | `/v1/static-pods` | reader |
//!
//! An unknown path answers 404 and a known path with another method 405 (with
//! `Allow`), an operation id that is not one 400, all in the error envelope.
//! `POST /v1/upgrades` needs a body; the other writes read an empty one as `{}`.
//! Writes answer 202 with the operation, except an etcd snapshot, which
//! answers 200 once it is taken.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{ETAG, HeaderValue, IF_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use upkeep_common::api::{
    DrainRequest, DrainTimeoutAction, Operation, OperationKind, OperationList, OperationPhase, OperationRequest,
    UpgradeRequest,
};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role};
use upkeep_net::body::{BodyPresence, RequestBody, read_json};
use upkeep_net::connection::ShutdownSignal;
use upkeep_net::response::{self, Body};
pub use upkeep_net::routing::ApiMethod;
use upkeep_net::routing::{self, Routed};

use crate::app::App;
use crate::server::etcd;
use crate::server::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::server::wait::{self, WaitQuery};

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Liveness.
    Healthz,
    /// Prometheus metrics.
    Metrics,
    /// The node's state.
    GetNode,
    /// Recent operations.
    ListOperations,
    /// One operation.
    GetOperation,
    /// Start an upgrade.
    Upgrade,
    /// Cancel an operation.
    Cancel,
    /// Roll back to the previous completed version.
    Rollback,
    /// Cordon the node.
    Cordon,
    /// Uncordon the node.
    Uncordon,
    /// Drain the node.
    Drain,
    /// Take an etcd snapshot.
    EtcdSnapshot,
    /// etcd's health.
    EtcdHealth,
    /// The static pods' health.
    StaticPods,
}

/// One route of the API.
pub type Route = routing::Route<Endpoint>;

/// Every route of the API (the OpenAPI document is tested against this list).
pub const ROUTES: &[Route] = &[
    Route::new(ApiMethod::Get, "/healthz", None, Endpoint::Healthz),
    Route::new(ApiMethod::Get, "/metrics", Some(Role::Reader), Endpoint::Metrics),
    Route::new(ApiMethod::Get, "/v1/node", Some(Role::Reader), Endpoint::GetNode),
    Route::new(ApiMethod::Get, "/v1/operations", Some(Role::Reader), Endpoint::ListOperations),
    Route::new(ApiMethod::Get, "/v1/operations/{id}", Some(Role::Reader), Endpoint::GetOperation),
    Route::new(ApiMethod::Post, "/v1/upgrades", Some(Role::Operator), Endpoint::Upgrade),
    Route::new(ApiMethod::Post, "/v1/operations/{id}/cancel", Some(Role::Operator), Endpoint::Cancel),
    Route::new(ApiMethod::Post, "/v1/rollback", Some(Role::Admin), Endpoint::Rollback),
    Route::new(ApiMethod::Post, "/v1/cordon", Some(Role::Operator), Endpoint::Cordon),
    Route::new(ApiMethod::Post, "/v1/uncordon", Some(Role::Operator), Endpoint::Uncordon),
    Route::new(ApiMethod::Post, "/v1/drain", Some(Role::Operator), Endpoint::Drain),
    Route::new(ApiMethod::Post, "/v1/etcd/snapshot", Some(Role::Operator), Endpoint::EtcdSnapshot),
    Route::new(ApiMethod::Get, "/v1/etcd/health", Some(Role::Reader), Endpoint::EtcdHealth),
    Route::new(ApiMethod::Get, "/v1/static-pods", Some(Role::Reader), Endpoint::StaticPods),
];

/// Serves one request from `identity`. Never fails: every problem becomes an envelope.
pub async fn handle(app: &Arc<App>, identity: &Identity, request: Request<RequestBody>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let (route_label, response) = match routing::route(ROUTES, &method, &path) {
        Routed::Found(route, ids) => {
            let id = ids.into_iter().next();
            (route.path, authorize_and_dispatch(app, identity, route, id, request).await)
        }
        Routed::Refused(label, response) => (label, response),
    };
    let status = response.status().as_u16();
    app.metrics.server.record_request(route_label, status);
    if method == Method::POST {
        tracing::info!(target: "audit", client = %identity, route = route_label, status, "mutating request");
    }
    response
}

async fn authorize_and_dispatch(
    app: &Arc<App>,
    identity: &Identity,
    route: &Route,
    id: Option<String>,
    request: Request<RequestBody>,
) -> Response<Body> {
    if let Some(required) = route.role
        && !identity.allows(required)
    {
        return response::error(&forbidden(identity, required));
    }
    match dispatch(app, identity, route.endpoint, id, request).await {
        Ok(response) => response,
        Err(error) => response::error(&error),
    }
}

fn forbidden(identity: &Identity, required: Role) -> ErrorBody {
    routing::forbidden(identity, required, "")
}

async fn dispatch(
    app: &Arc<App>,
    identity: &Identity,
    endpoint: Endpoint,
    id: Option<String>,
    request: Request<RequestBody>,
) -> Result<Response<Body>, ErrorBody> {
    match endpoint {
        Endpoint::Healthz => Ok(response::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        Endpoint::Metrics => Ok(response::with_body(StatusCode::OK, METRICS_CONTENT_TYPE, app.metrics.encode())),
        Endpoint::GetNode => {
            let (state, etag) = app.node.snapshot();
            let mut response = response::json(StatusCode::OK, &state);
            if let Ok(value) = HeaderValue::from_str(etag.as_str()) {
                response.headers_mut().insert(ETAG, value);
            }
            Ok(response)
        }
        Endpoint::ListOperations => {
            Ok(response::json(StatusCode::OK, &OperationList { operations: app.engine.operations() }))
        }
        Endpoint::GetOperation => {
            let id = parse_operation_id(id.as_deref())?;
            let operation = match wait::parse_query(request.uri().query())? {
                None => app.engine.operation(&id),
                Some(query) => {
                    let shutdown = request.extensions().get::<ShutdownSignal>().cloned();
                    let waited =
                        wait::operation_when_past(&app.engine, &app.waiting, &app.metrics, &id, query, shutdown);
                    waited.await.map(|waited| waited.operation)
                }
            };
            Ok(response::json(StatusCode::OK, &operation.ok_or_else(|| not_found(&id))?))
        }
        Endpoint::Upgrade => {
            let preferred = wait::preferred_wait(request.headers());
            let shutdown = request.extensions().get::<ShutdownSignal>().cloned();
            let operation = upgrade(app, identity, request).await?;
            Ok(answer_upgrade(app, operation, preferred, shutdown).await)
        }
        Endpoint::Cancel => {
            let _: OperationRequest = read_json(request, BodyPresence::Optional).await?;
            let id = parse_operation_id(id.as_deref())?;
            audited(identity, None, app.engine.cancel(&id, identity))
        }
        Endpoint::Rollback | Endpoint::Cordon | Endpoint::Uncordon => {
            let body: OperationRequest = read_json(request, BodyPresence::Optional).await?;
            let kind = match endpoint {
                Endpoint::Rollback => OperationKind::Rollback,
                Endpoint::Cordon => OperationKind::Cordon,
                _ => OperationKind::Uncordon,
            };
            let token = body.request_token.clone();
            audited(
                identity,
                token.as_ref(),
                app.engine.submit_node_operation(identity, kind, body.request_token, None),
            )
        }
        Endpoint::Drain => {
            let body: DrainRequest = read_json(request, BodyPresence::Optional).await?;
            if body.drain.as_ref().and_then(|d| d.on_timeout) == Some(DrainTimeoutAction::Force)
                && !identity.allows(Role::Admin)
            {
                return Err(forbidden(identity, Role::Admin));
            }
            let token = body.request_token.clone();
            let operation =
                app.engine.submit_node_operation(identity, OperationKind::Drain, body.request_token, body.drain);
            audited(identity, token.as_ref(), operation)
        }
        Endpoint::EtcdSnapshot => etcd::snapshot(app, identity, request).await,
        Endpoint::EtcdHealth => etcd::health(app).await,
        Endpoint::StaticPods => {
            let static_pods = crate::engine::steps::static_pod_health(&app.engine).await;
            Ok(response::json(StatusCode::OK, &upkeep_common::api::StaticPodList { static_pods }))
        }
    }
}

/// Accepts an upgrade (or finds the one its token names) and records it in the audit log.
async fn upgrade(app: &Arc<App>, identity: &Identity, request: Request<RequestBody>) -> Result<Operation, ErrorBody> {
    let if_match = request.headers().get(IF_MATCH).map(|v| v.to_str().unwrap_or("").to_owned());
    let upgrade: UpgradeRequest = read_json(request, BodyPresence::Required).await?;
    let token = upgrade.request_token.clone();
    if let Some(existing) = app.engine.replayed_upgrade(&upgrade)? {
        return audit(identity, token.as_ref(), Ok(existing));
    }
    // The API server is asked even when the request claims a version: a
    // claim newer than its answer needs admin force (the skew rule is
    // against the oldest API server).
    let control_plane = match app.host.kubernetes.control_plane_version().await {
        Ok(version) => version,
        Err(_) if upgrade.force && upgrade.control_plane_version.is_some() => None,
        Err(error) => {
            return Err(ErrorBody::new(
                ErrorCode::DependencyUnavailable,
                format!("the control-plane version is needed for the skew rule: {error}"),
            ));
        }
    };
    let operation = app.engine.submit_upgrade(identity, upgrade, if_match.as_deref(), control_plane);
    audit(identity, token.as_ref(), operation)
}

/// The answer to an accepted upgrade: at once, or with a preferred wait once
/// the operation has ended (or the wait is over), saying the wait was applied
/// (not when every waiting place was taken and the answer came at once).
async fn answer_upgrade(
    app: &App,
    operation: Operation,
    preferred: Option<Duration>,
    shutdown: Option<ShutdownSignal>,
) -> Response<Body> {
    let Some(wait) = preferred else { return response::json(StatusCode::ACCEPTED, &operation) };
    let query = WaitQuery { wait, after: Some(OperationPhase::Running) };
    let waited = wait::operation_when_past(&app.engine, &app.waiting, &app.metrics, &operation.id, query, shutdown);
    let Some(waited) = waited.await else { return response::json(StatusCode::ACCEPTED, &operation) };
    let mut response = response::json(StatusCode::ACCEPTED, &waited.operation);
    if waited.honoured
        && let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
    {
        response.headers_mut().insert(wait::PREFERENCE_APPLIED, applied);
    }
    response
}

/// Logs a mutating request's outcome with who asked, and answers 202 with the operation.
fn audited(
    identity: &Identity,
    token: Option<&RequestToken>,
    outcome: Result<Operation, ErrorBody>,
) -> Result<Response<Body>, ErrorBody> {
    audit(identity, token, outcome).map(|operation| response::json(StatusCode::ACCEPTED, &operation))
}

/// Records an accepted operation or a refused write in the audit log.
fn audit(
    identity: &Identity,
    token: Option<&RequestToken>,
    outcome: Result<Operation, ErrorBody>,
) -> Result<Operation, ErrorBody> {
    match &outcome {
        Ok(operation) => tracing::info!(
            target: "audit",
            client = %identity,
            request_token = token.map(RequestToken::as_str).unwrap_or("-"),
            operation = %operation.id,
            kind = ?operation.kind,
            phase = ?operation.phase,
            "operation accepted"
        ),
        Err(error) => tracing::info!(
            target: "audit",
            client = %identity,
            request_token = token.map(RequestToken::as_str).unwrap_or("-"),
            code = %error.error.code,
            "request refused: {}",
            error.error.message
        ),
    }
    outcome
}

/// The operation id of a path segment, percent-decoded first (`op%3A1` is `op:1`).
fn parse_operation_id(id: Option<&str>) -> Result<OperationId, ErrorBody> {
    let raw = id.unwrap_or_default();
    let id = percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| {
        ErrorBody::new(ErrorCode::MalformedRequest, format!("not an operation id: {raw:?} is not UTF-8 once decoded"))
    })?;
    id.parse::<OperationId>()
        .map_err(|error| ErrorBody::new(ErrorCode::MalformedRequest, format!("not an operation id: {error}")))
}

fn not_found(id: &OperationId) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("no operation {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_percent_decoded() {
        assert_eq!(parse_operation_id(Some("op%3A1")).expect("valid").as_str(), "op:1");
        assert_eq!(parse_operation_id(Some("op-1")).expect("valid").as_str(), "op-1");
        for bad in ["op%2F1", "op%FF", "%20", ""] {
            let error = parse_operation_id(Some(bad)).expect_err(bad);
            assert_eq!(error.error.code, ErrorCode::MalformedRequest, "{bad}");
        }
    }

    #[test]
    fn every_route_is_unique() {
        for (index, route) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[..index].iter().all(|other| other.path != route.path || other.method != route.method),
                "{} {} is listed twice",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn only_reads_are_open_to_readers() {
        for route in ROUTES {
            let reader_may = route.role.is_none_or(|role| role <= Role::Reader);
            assert_eq!(reader_may, route.method == ApiMethod::Get, "{} {}", route.method, route.path);
        }
    }
}
