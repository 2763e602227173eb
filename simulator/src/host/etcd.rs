//! The simulated etcd of a control-plane machine: healthy while a quorum of
//! the fleet's etcd members run Ready; a snapshot is a file under the
//! agent's state directory on the machine's in-memory disk.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use upkeep_agent::host::BoxFuture;
use upkeep_agent::host::etcd::{EtcdAccess, EtcdError};
use upkeep_common::api::{EtcdHealth, SnapshotInfo};

use super::{Machine, digest};

/// The endpoint every simulated etcd member answers on.
const ENDPOINT: &str = "https://127.0.0.1:2379";

/// etcd as a control-plane machine's agent reaches it; not configured on a worker.
pub(super) struct SimEtcd(pub(super) Arc<Machine>);

impl EtcdAccess for SimEtcd {
    fn configured(&self) -> bool {
        self.0.static_pods.is_some()
    }

    fn snapshot<'a>(
        &'a self,
        dir: &'a Path,
        taken_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EtcdError>> {
        Box::pin(async move {
            if !self.configured() {
                return Err(EtcdError::NotConfigured);
            }
            let name = format!("etcd-snapshot-{}.db", taken_at.format("%Y%m%dT%H%M%S%.3fZ"));
            let path = dir.join(&name);
            let bytes = format!("#!sim etcd snapshot {taken_at}\n").into_bytes();
            let info = SnapshotInfo {
                name,
                path: path.display().to_string(),
                size: bytes.len() as u64,
                sha256: digest(&bytes),
                taken_at,
                endpoint: ENDPOINT.to_owned(),
            };
            self.0.files().insert(path, bytes);
            Ok(info)
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<EtcdHealth, EtcdError>> {
        Box::pin(async move {
            let Some((_, log)) = self.0.fleet.as_ref().filter(|_| self.configured()) else {
                return Err(EtcdError::NotConfigured);
            };
            let (ready, members) = log.etcd_members();
            Ok(EtcdHealth {
                healthy: ready * 2 > members,
                endpoint: ENDPOINT.to_owned(),
                message: format!("{ready} of {members} members Ready"),
            })
        })
    }
}
