//! The agent calls a rollout makes around the control plane: an etcd snapshot
//! before it is touched, and etcd's and the static pods' health between two
//! control-plane nodes.

use std::time::Duration;

use bytes::Bytes;
use upkeep_common::ErrorCode;
use upkeep_common::api::{EtcdHealth, SnapshotInfo, StaticPodList};

use super::{AgentClient, Call, ClientError, Safety};

/// The longest an etcd snapshot may take (the agent bounds it by its own
/// `snapshot_timeout_secs`, at most an hour).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(3_600);

impl AgentClient {
    /// `POST /v1/etcd/snapshot`: the snapshot the agent took and kept on its node.
    pub async fn etcd_snapshot(&self, address: &str) -> Result<SnapshotInfo, ClientError> {
        let call = Call::post(address, "/v1/etcd/snapshot", Bytes::from_static(b"{}"), Safety::Once);
        self.call(Call { wait: SNAPSHOT_WAIT, ..call }).await
    }

    /// `GET /v1/etcd/health`; `None` when the agent has no `[etcd]` (the
    /// only reason this route answers 409).
    pub async fn etcd_health(&self, address: &str) -> Result<Option<EtcdHealth>, ClientError> {
        match self.call(Call::get(address, "/v1/etcd/health")).await {
            Err(error) if error.code() == Some(ErrorCode::Conflict) => Ok(None),
            other => other.map(Some),
        }
    }

    /// `GET /v1/static-pods`.
    pub async fn static_pods(&self, address: &str) -> Result<StaticPodList, ClientError> {
        self.call(Call::get(address, "/v1/static-pods")).await
    }
}
