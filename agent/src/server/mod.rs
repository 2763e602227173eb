//! The agent's HTTPS API: its routes and metrics, served through
//! `upkeep-net`'s accept loop (connection cap, timeouts, caller identity, body
//! limits) with the agent's `[server]` limits.

pub mod etcd;
pub mod metrics;
pub mod routes;
pub mod step_durations;
pub mod wait;

use std::future::Future;
use std::sync::Arc;

use hyper::{Request, Response};
use tokio::net::TcpListener;
use upkeep_common::Identity;
use upkeep_net::ServerCredentials;
use upkeep_net::body::RequestBody;
use upkeep_net::metrics::ServerMetrics;
use upkeep_net::response::Body;

use crate::app::App;

/// The agent as an `upkeep-net` service: routes for requests, metrics for connections.
struct AgentService {
    app: Arc<App>,
}

impl upkeep_net::Service for AgentService {
    async fn call(&self, caller: &Identity, request: Request<RequestBody>) -> Response<Body> {
        routes::handle(&self.app, caller, request).await
    }

    fn metrics(&self) -> Option<&ServerMetrics> {
        Some(&self.app.metrics.server)
    }
}

/// Serves the API on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    credentials: Arc<ServerCredentials>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = app.config.server.clone();
    upkeep_net::serve(listener, credentials, limits, Arc::new(AgentService { app }), shutdown).await;
}
