//! The simulated node's Kubernetes API: its Node's cordon, a drain that
//! disruption budgets may block, the control plane's version and the static
//! pods' mirror pods.

use std::sync::Arc;
use std::time::Duration;

use upkeep_agent::host::BoxFuture;
use upkeep_agent::host::kubernetes::{
    ContainerObservation, CordonOutcome, DrainOutcome, DrainSettings, KubeError, NodeAccess, NodeObservation,
    ReadyCondition,
};
use upkeep_common::Version;
use upkeep_common::ids::OperationId;

use super::Machine;
use crate::faults::FaultKind;

/// The node's Kubernetes API: cordon state, a drain that disruption budgets
/// may block, the oldest kube-apiserver of the fleet (the rollout's target
/// when no machine runs one) and the mirror pods of the machine's static pods.
pub(super) struct SimKube(pub(super) Arc<Machine>);

impl NodeAccess for SimKube {
    fn configured(&self) -> bool {
        true
    }

    fn observe(&self) -> BoxFuture<'_, Result<Option<NodeObservation>, KubeError>> {
        Box::pin(async move {
            let node = self.0.node().clone();
            Ok(Some(NodeObservation {
                unschedulable: node.unschedulable,
                cordoned_by: node.cordoned_by,
                ready: Some(ReadyCondition {
                    status: "True".to_owned(),
                    last_heartbeat: Some(node.heartbeat),
                    reason: "KubeletReady".to_owned(),
                }),
                kubelet_version: node.kubelet_version.map(|v| v.to_string()),
            }))
        })
    }

    fn cordon<'a>(&'a self, operation: &'a OperationId) -> BoxFuture<'a, Result<CordonOutcome, KubeError>> {
        Box::pin(async move {
            let mut node = self.0.node();
            if node.unschedulable && node.cordoned_by.as_deref() != Some(operation.as_str()) {
                return Ok(CordonOutcome::AlreadyCordoned);
            }
            node.unschedulable = true;
            node.cordoned_by = Some(operation.to_string());
            drop(node);
            self.0.report_cordoned(true);
            Ok(CordonOutcome::Cordoned)
        })
    }

    fn uncordon<'a>(&'a self, operation: &'a OperationId, only_if_ours: bool) -> BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async move {
            let mut node = self.0.node();
            if only_if_ours && node.cordoned_by.as_deref() != Some(operation.as_str()) {
                return Ok(());
            }
            node.unschedulable = false;
            node.cordoned_by = None;
            drop(node);
            self.0.report_cordoned(false);
            Ok(())
        })
    }

    fn drain<'a>(&'a self, settings: &'a DrainSettings) -> BoxFuture<'a, Result<DrainOutcome, KubeError>> {
        Box::pin(async move {
            self.0.step_delay().await;
            match self.0.fault() {
                Some(FaultKind::DrainBlockedForGood) => {
                    tokio::time::sleep(settings.timeout).await;
                    Err(KubeError::DrainBlocked(format!(
                        "pods did not leave within {:?}: default/app (blocked by a disruption budget until the timeout)",
                        settings.timeout
                    )))
                }
                Some(FaultKind::DrainBlockedForAWhile) => {
                    let wait = (settings.timeout / 4).min(Duration::from_millis(500));
                    tokio::time::sleep(wait).await;
                    Ok(DrainOutcome::Drained { evicted: 3, retries: 3, forced: Vec::new() })
                }
                _ => Ok(DrainOutcome::Drained { evicted: 3, retries: 0, forced: Vec::new() }),
            }
        })
    }

    fn control_plane_version(&self) -> BoxFuture<'_, Result<Option<Version>, KubeError>> {
        Box::pin(async move {
            let oldest = self.0.fleet.as_ref().and_then(|(_, log)| log.oldest_api_server());
            Ok(Some(oldest.unwrap_or_else(|| self.0.target.clone())))
        })
    }

    fn static_pod_container<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<ContainerObservation>, KubeError>> {
        Box::pin(async move {
            Ok(self.0.static_pods.as_ref().and_then(|kubelet| kubelet.container(namespace, pod, container)))
        })
    }
}
