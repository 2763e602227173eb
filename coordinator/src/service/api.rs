//! The service's HTTPS API (DESIGN.md §6): its routes with the role each
//! needs, on every cluster (`upkeep:ROLE`) or on the one in the path
//! (`upkeep:ROLE:CLUSTER`), and the one place that turns a request into a
//! response. Every write is audit-logged with the caller's identity.
//!
//! | method | path | role |
//! |---|---|---|
//! | GET | `/healthz`, `/readyz` | any client certificate from the trusted CA |
//! | GET | `/metrics` | reader |
//! | GET | `/v1/clusters` | reader (the clusters the caller may read) |
//! | GET | `/v1/clusters/{cluster}` | reader |
//! | PATCH | `/v1/clusters/{cluster}` | operator |
//! | POST | `/v1/clusters/{cluster}/upgrade` | operator (`force`, `policy`: admin) |
//! | GET | `/v1/clusters/{cluster}/updates`, `.../updates/{id}` | reader |
//! | POST | `.../updates/{id}/pause`, `/resume`, `/cancel` | operator |
//! | POST | `.../updates/{id}/rollback` | admin (so is a `PATCH` back to the version before the last update) |
//! | GET | `.../updates/{id}/events?from=N` | reader |
//! | GET | `/v1/clusters/{cluster}/nodes` | reader |

use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode};
use upkeep_common::{ErrorBody, ErrorCode, Identity, Role};
use upkeep_net::body::RequestBody;
use upkeep_net::response::{self, Body};
use upkeep_net::routing::{self, ApiMethod, Routed};

use super::app::ServiceApp;
use super::handlers;
use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Liveness.
    Healthz,
    /// Readiness.
    Readyz,
    /// Prometheus metrics.
    Metrics,
    /// Every cluster.
    ListClusters,
    /// One cluster.
    GetCluster,
    /// Set the desired version.
    PatchCluster,
    /// Start an upgrade.
    Upgrade,
    /// A cluster's updates.
    ListUpdates,
    /// One update.
    GetUpdate,
    /// Pause an update.
    Pause,
    /// Resume an update.
    Resume,
    /// Cancel an update.
    Cancel,
    /// Roll an ended update back.
    Rollback,
    /// An update's events.
    Events,
    /// A cluster's nodes.
    Nodes,
}

/// One route of the API.
pub type Route = routing::Route<Endpoint>;

const READER: Option<Role> = Some(Role::Reader);
const OPERATOR: Option<Role> = Some(Role::Operator);

/// Every route of the API (the OpenAPI document is tested against this list).
pub const ROUTES: &[Route] = &[
    Route::new(ApiMethod::Get, "/healthz", None, Endpoint::Healthz),
    Route::new(ApiMethod::Get, "/readyz", None, Endpoint::Readyz),
    Route::new(ApiMethod::Get, "/metrics", READER, Endpoint::Metrics),
    Route::new(ApiMethod::Get, "/v1/clusters", READER, Endpoint::ListClusters),
    Route::new(ApiMethod::Get, "/v1/clusters/{cluster}", READER, Endpoint::GetCluster),
    Route::new(ApiMethod::Patch, "/v1/clusters/{cluster}", OPERATOR, Endpoint::PatchCluster),
    Route::new(ApiMethod::Post, "/v1/clusters/{cluster}/upgrade", OPERATOR, Endpoint::Upgrade),
    Route::new(ApiMethod::Get, "/v1/clusters/{cluster}/updates", READER, Endpoint::ListUpdates),
    Route::new(ApiMethod::Get, "/v1/clusters/{cluster}/updates/{id}", READER, Endpoint::GetUpdate),
    Route::new(ApiMethod::Post, "/v1/clusters/{cluster}/updates/{id}/pause", OPERATOR, Endpoint::Pause),
    Route::new(ApiMethod::Post, "/v1/clusters/{cluster}/updates/{id}/resume", OPERATOR, Endpoint::Resume),
    Route::new(ApiMethod::Post, "/v1/clusters/{cluster}/updates/{id}/cancel", OPERATOR, Endpoint::Cancel),
    Route::new(ApiMethod::Post, "/v1/clusters/{cluster}/updates/{id}/rollback", Some(Role::Admin), Endpoint::Rollback),
    Route::new(ApiMethod::Get, "/v1/clusters/{cluster}/updates/{id}/events", READER, Endpoint::Events),
    Route::new(ApiMethod::Get, "/v1/clusters/{cluster}/nodes", READER, Endpoint::Nodes),
];

/// The service as an `upkeep-net` service.
pub struct ServiceHandler {
    /// The service.
    pub app: Arc<ServiceApp>,
}

impl upkeep_net::Service for ServiceHandler {
    async fn call(&self, caller: &Identity, request: Request<RequestBody>) -> Response<Body> {
        handle(&self.app, caller, request).await
    }

    fn metrics(&self) -> Option<&upkeep_net::metrics::ServerMetrics> {
        Some(&self.app.metrics.server)
    }
}

/// Serves one request. Never fails: every problem becomes an envelope.
pub async fn handle(app: &Arc<ServiceApp>, identity: &Identity, request: Request<RequestBody>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let (label, response) = match routing::route(ROUTES, &method, &path) {
        Routed::Found(route, values) => {
            (route.path, authorize_and_dispatch(app, identity, route, &values, request).await)
        }
        Routed::Refused(label, response) => (label, response),
    };
    let status = response.status().as_u16();
    app.metrics.server.record_request(label, status);
    if method != Method::GET {
        tracing::info!(target: "audit", client = %identity, route = label, path = %upkeep_net::log::Escaped(&path), status, "request");
    }
    response
}

async fn authorize_and_dispatch(
    app: &Arc<ServiceApp>,
    identity: &Identity,
    route: &Route,
    values: &[String],
    request: Request<RequestBody>,
) -> Response<Body> {
    let cluster = values.first().map(String::as_str);
    if let Some(required) = route.role {
        let allowed = match cluster {
            Some(cluster) => identity.allows_on(required, cluster),
            None if route.endpoint == Endpoint::ListClusters => {
                identity.allows(required) || identity.cluster_roles.values().any(|role| *role >= required)
            }
            None => identity.allows(required),
        };
        if !allowed {
            let scope = cluster.map(|c| format!(" on cluster {c}")).unwrap_or_default();
            return response::error(&routing::forbidden(identity, required, &scope));
        }
    }
    let result = match route.endpoint {
        Endpoint::Healthz => Ok(response::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        Endpoint::Readyz => Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({"ready": true, "leader": true, "replica": app.replica}),
        )),
        Endpoint::Metrics => {
            Ok(response::with_body(StatusCode::OK, METRICS_CONTENT_TYPE, app.metrics.encode(app.store.stats())))
        }
        Endpoint::ListClusters => handlers::list_clusters(app, identity).await,
        endpoint => match app.clusters.get(cluster.unwrap_or_default()) {
            None => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no cluster {}", upkeep_net::log::Escaped(cluster.unwrap_or_default())),
            )),
            Some(found) => {
                let id = values.get(1).map(String::as_str);
                handlers::dispatch(app, found, identity, endpoint, id, request).await
            }
        },
    };
    result.unwrap_or_else(|error| response::error(&error))
}
