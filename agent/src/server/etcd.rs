//! The etcd routes: `POST /v1/etcd/snapshot` (operator) takes a snapshot into
//! `<state_dir>/etcd-snapshots/` and answers 200 with where it is and its
//! sha256; `GET /v1/etcd/health` (reader) answers 200 with etcd's health.
//!
//! Without `[etcd]` both answer 409 `conflict`; an etcd that cannot be reached
//! or fails the snapshot, or a disk that cannot take it, 503
//! `dependency_unavailable`; a snapshot asked while one is being taken, 409
//! `conflict`. Every snapshot request is audit-logged with its outcome.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use hyper::{Request, Response, StatusCode};
use upkeep_common::api::SnapshotRequest;
use upkeep_common::{ErrorBody, ErrorCode, Identity};
use upkeep_net::body::{BodyPresence, RequestBody, read_json};
use upkeep_net::response::{self, Body};

use crate::app::App;
use crate::host::etcd::EtcdError;

/// The directory under the state directory that holds the snapshots.
pub const SNAPSHOT_DIR: &str = "etcd-snapshots";

/// Where the snapshots of the agent with `state_dir` are kept.
pub fn snapshot_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join(SNAPSHOT_DIR)
}

/// `POST /v1/etcd/snapshot`.
pub async fn snapshot(
    app: &Arc<App>,
    identity: &Identity,
    request: Request<RequestBody>,
) -> Result<Response<Body>, ErrorBody> {
    let _: SnapshotRequest = read_json(request, BodyPresence::Optional).await?;
    let outcome = take_snapshot(app).await;
    match &outcome {
        Ok(info) => tracing::info!(
            target: "audit",
            client = %identity,
            snapshot = %info.path,
            size = info.size,
            sha256 = %info.sha256,
            endpoint = %info.endpoint,
            "etcd snapshot taken"
        ),
        Err(error) => tracing::info!(
            target: "audit",
            client = %identity,
            code = %error.error.code,
            "etcd snapshot refused: {}",
            error.error.message
        ),
    }
    outcome.map(|info| response::json(StatusCode::OK, &info))
}

async fn take_snapshot(app: &Arc<App>) -> Result<upkeep_common::api::SnapshotInfo, ErrorBody> {
    if !app.host.etcd.configured() {
        return Err(error_body(&EtcdError::NotConfigured));
    }
    let Ok(_one_at_a_time) = app.etcd_snapshot.try_lock() else {
        return Err(ErrorBody::new(ErrorCode::Conflict, "an etcd snapshot is already being taken on this node"));
    };
    let dir = snapshot_dir(&app.config.state_dir);
    app.host.etcd.snapshot(&dir, Utc::now()).await.map_err(|error| error_body(&error))
}

/// `GET /v1/etcd/health`.
pub async fn health(app: &Arc<App>) -> Result<Response<Body>, ErrorBody> {
    let health = app.host.etcd.health().await.map_err(|error| error_body(&error))?;
    Ok(response::json(StatusCode::OK, &health))
}

/// The envelope for an etcd failure: 409 without `[etcd]`, 503 otherwise.
fn error_body(error: &EtcdError) -> ErrorBody {
    let code = match error {
        EtcdError::NotConfigured => ErrorCode::Conflict,
        _ => ErrorCode::DependencyUnavailable,
    };
    ErrorBody::new(code, error.to_string())
}
