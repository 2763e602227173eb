//! The workflow's checks: PreCheck (every node answers with its versions and
//! architecture, the catalog has its artifacts, an agent dry run passes) and
//! PostCheck (every patched node reports the target). Each returns the nodes
//! that failed with why; the workflow decides what that means.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use upkeep_common::Version;
use upkeep_common::api::{Artifact, ImageArtifact, UpgradeRequest};
use upkeep_common::ids::NodeName;

use crate::catalog::Release;
use crate::journal::{Journal, NodeError};
use crate::plan::NodeStatus;
use crate::rollout::node::{NodeJob, NodeOutcome};
use crate::status::{NodeStatusRow, Unreadable, row_of};

use super::cluster::ClusterRuntime;

/// The longest one node's dry run may take.
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// What PreCheck learned of the nodes, kept for the later tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesBefore {
    /// Each node's architecture.
    pub arch: HashMap<String, String>,
    /// Each node's version before the update (for a rollback).
    pub version: HashMap<String, Option<Version>>,
    /// The release's artifacts for each architecture found.
    pub artifacts: BTreeMap<String, Vec<Artifact>>,
    /// The release's static-pod images.
    pub images: Vec<ImageArtifact>,
}

fn problem(node: &NodeName, code: &str, message: String) -> NodeError {
    NodeError { node: node.clone(), step: None, code: code.to_owned(), message }
}

/// Reads every node, checks the release covers its architecture, and runs an
/// agent dry run on every node that passed so far. Each node is read and
/// dry-run in one go, so both ride on one connection.
pub async fn precheck(cluster: &ClusterRuntime, update_id: &str, release: &Release) -> (NodesBefore, Vec<NodeError>) {
    // Every architecture the release covers, so that a node read only later
    // (one that failed here and is tolerated) still finds its artifacts.
    let mut before = NodesBefore {
        artifacts: release.artifacts_by_arch(),
        images: release.image_artifacts(),
        ..NodesBefore::default()
    };
    let mut checked: Vec<(usize, NodeStatusRow, Result<String, NodeError>)> =
        stream::iter(0..cluster.inventory.nodes.len())
            .map(|index| check_node(cluster, update_id, release, index))
            .buffer_unordered(cluster.settings.concurrency.max(1))
            .collect()
            .await;
    checked.sort_by_key(|(index, _, _)| *index);
    cluster.absorb(checked.iter().map(|(_, row, _)| row));
    let mut problems = Vec::new();
    for ((_, row, verdict), view) in checked.into_iter().zip(cluster.nodes()) {
        let name = row.name.to_string();
        before.version.insert(name.clone(), view.kubernetes_version().cloned());
        match verdict {
            Ok(arch) => {
                before.arch.insert(name, arch);
            }
            Err(problem) => problems.push(problem),
        }
    }
    (before, problems)
}

/// Reads node `index`, checks the release has its architecture's artifacts,
/// and runs its dry run: its architecture when all passed.
async fn check_node(
    cluster: &ClusterRuntime,
    update_id: &str,
    release: &Release,
    index: usize,
) -> (usize, NodeStatusRow, Result<String, NodeError>) {
    let node = &cluster.inventory.nodes[index];
    // Read on a connection that stays open: the dry run follows on it.
    let row = row_of(node, cluster.client.node(&node.address).await);
    let Some(state) = &row.state else {
        let (code, message) = unreadable_reason(row.unreadable.as_ref());
        return (index, row.clone(), Err(problem(&node.name, &code, message)));
    };
    if state.host.arch.is_empty() {
        let message = "the agent does not report its architecture (upgrade the agent first)".to_owned();
        return (index, row.clone(), Err(problem(&node.name, "arch_unknown", message)));
    }
    let arch = state.host.arch.clone();
    let artifacts = match release.artifacts_for(&arch) {
        Ok(artifacts) => artifacts,
        Err(missing) => return (index, row.clone(), Err(problem(&node.name, "artifact_missing", missing.to_string()))),
    };
    let job = dry_run_job(cluster, update_id, &node.name, &node.address, &release.version, artifacts);
    let verdict = match job.run().await {
        NodeOutcome::Failed { error, .. } => Err(error),
        NodeOutcome::Patched | NodeOutcome::Skipped => Ok(arch),
    };
    (index, row, verdict)
}

/// Why a row could not be read, as (code, message).
fn unreadable_reason(unreadable: Option<&Unreadable>) -> (String, String) {
    match unreadable {
        Some(unreadable) => (unreadable.code.clone(), unreadable.message.clone()),
        None => ("unreadable".to_owned(), "the node's state could not be read".to_owned()),
    }
}

fn dry_run_job(
    cluster: &ClusterRuntime,
    update_id: &str,
    name: &NodeName,
    address: &str,
    target: &Version,
    artifacts: Vec<Artifact>,
) -> NodeJob {
    let token = format!("{update_id}:{name}:precheck").parse().ok();
    NodeJob {
        client: cluster.client.clone(),
        address: address.to_owned(),
        name: name.clone(),
        request: UpgradeRequest {
            target_version: target.clone(),
            artifacts,
            images: Vec::new(),
            request_token: token,
            force: false,
            drain: None,
            dry_run: true,
            stage_only: false,
            control_plane_version: None,
        },
        poll_interval: cluster.settings.poll_interval,
        node_timeout: cluster.config.policy.node_timeout.min(DRY_RUN_TIMEOUT),
    }
}

/// Reads every node the journal counts patched and returns those that do not
/// report the target for every artifact they installed.
pub async fn postcheck(cluster: &ClusterRuntime, journal: &Journal) -> Vec<NodeError> {
    let rows = cluster.read_nodes().await;
    let row_of: HashMap<&NodeName, &NodeStatusRow> = rows.iter().map(|row| (&row.name, row)).collect();
    let mut problems = Vec::new();
    for (index, node) in journal.nodes.iter().enumerate() {
        if node.status != NodeStatus::Patched {
            continue;
        }
        let Some(row) = row_of.get(&node.name) else { continue };
        match &row.state {
            None => {
                let (code, message) = unreadable_reason(row.unreadable.as_ref());
                problems.push(problem(&node.name, &code, message));
            }
            Some(state) => {
                let artifacts = journal.artifacts_for(index);
                let behind: Vec<String> = artifacts
                    .iter()
                    .filter(|artifact| {
                        !state.components.iter().any(|c| {
                            c.name == artifact.component && c.observed_version.as_ref() == Some(&journal.target)
                        })
                    })
                    .map(|artifact| artifact.component.to_string())
                    .collect();
                if !behind.is_empty() {
                    let verb = if behind.len() == 1 { "does" } else { "do" };
                    let message = format!("{} {verb} not report {}", behind.join(", "), journal.target);
                    problems.push(problem(&node.name, "postcheck_failed", message));
                }
            }
        }
    }
    problems
}
