//! Opening a rollout: a new one from an inventory and a spec, or an
//! interrupted one from its journal (an aborted one is refused).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use upkeep_common::ids::NodeName;

use super::{DriverSettings, NODE_TIMEOUT_RANGE, Rollout, RolloutError, RolloutSpec, RolloutStorage};
use crate::client::AgentClient;
use crate::control::Control;
use crate::inventory::Inventory;
use crate::journal::{Journal, JournalError, JournalNode};
use crate::plan::{Limits, NodeStatus, PlanNode};
use crate::report::Counters;

/// Each of the journal's nodes looked up in the inventory once: its address,
/// and its planner view.
fn placement(inventory: &Inventory, journal: &Journal) -> Result<(Vec<String>, Vec<PlanNode>), RolloutError> {
    let by_name: HashMap<&NodeName, &crate::inventory::InventoryNode> =
        inventory.nodes.iter().map(|n| (&n.name, n)).collect();
    journal
        .nodes
        .iter()
        .map(|node| {
            let found = by_name.get(&node.name).ok_or_else(|| RolloutError::UnknownNode(node.name.clone()))?;
            let view = PlanNode {
                role: found.role,
                zone: found.zone().map(str::to_owned),
                status: node.status,
                unavailable: node.unavailable,
            };
            Ok((found.address.clone(), view))
        })
        .collect()
}

impl Rollout {
    /// A new rollout; nothing is sent until [`Rollout::run`]. A storage that
    /// already holds a rollout is refused: that one is resumed, never overwritten.
    pub async fn new(
        client: AgentClient,
        inventory: &Inventory,
        spec: RolloutSpec,
        storage: RolloutStorage,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        match storage.journal.load().await {
            Err(JournalError::Missing(_)) => {}
            Ok(existing) => return Err(RolloutError::Exists(existing.rollout_id)),
            Err(other) => return Err(other.into()),
        }
        let total = inventory.nodes.len();
        let max_unavailable = spec.max_unavailable.resolve_nonzero(total);
        if max_unavailable == 0 {
            return Err(RolloutError::BadLimits(format!(
                "--max-unavailable {} allows no node at all in a fleet of {total}",
                spec.max_unavailable
            )));
        }
        let rollout_id = spec.id.unwrap_or_else(|| {
            let suffix: u32 = rand::random();
            format!("r{}-{suffix:08x}", Utc::now().format("%Y%m%d%H%M%S"))
        });
        let journal = Journal {
            rollout_id,
            target: spec.target,
            artifacts: spec.artifacts,
            artifacts_by_arch: spec.artifacts_by_arch,
            limits: Limits {
                max_unavailable,
                max_failures: spec.max_failures.resolve(total),
                per_zone: spec.per_zone,
                soak_ms: u64::try_from(spec.soak.as_millis()).unwrap_or(u64::MAX),
            },
            prestage: spec.prestage,
            prestaged: false,
            images: spec.images,
            static_pods_done: false,
            etcd_snapshot: None,
            nodes: inventory
                .nodes
                .iter()
                .map(|node| JournalNode {
                    name: node.name.clone(),
                    status: NodeStatus::Pending,
                    operation: None,
                    error: None,
                    unavailable: false,
                    arch: spec.node_arch.get(&node.name).cloned(),
                })
                .collect(),
            node_count: inventory.nodes.len(),
            started_at: Utc::now(),
            updated_at: Utc::now(),
        };
        Self::with_journal(client, inventory, storage, journal, settings)
    }

    fn with_journal(
        client: AgentClient,
        inventory: &Inventory,
        storage: RolloutStorage,
        journal: Journal,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        if !NODE_TIMEOUT_RANGE.contains(&settings.node_timeout) {
            return Err(RolloutError::BadLimits(format!(
                "the node timeout must be from {}s to {}s, not {}s",
                NODE_TIMEOUT_RANGE.start().as_secs(),
                NODE_TIMEOUT_RANGE.end().as_secs(),
                settings.node_timeout.as_secs()
            )));
        }
        let (addresses, plan_view) = placement(inventory, &journal)?;
        let counters = Counters::of(&journal);
        Ok(Self {
            client,
            storage,
            journal,
            settings,
            stop: Arc::default(),
            unlogged: Vec::new(),
            unplanned: Vec::new(),
            addresses,
            plan_view,
            counters,
        })
    }

    /// Reopens a journal to finish its rollout; an aborted one is refused.
    pub async fn resume(
        client: AgentClient,
        inventory: &Inventory,
        storage: RolloutStorage,
        settings: DriverSettings,
    ) -> Result<Self, RolloutError> {
        let mut journal = storage.journal.load().await?;
        if storage.control.read() == Control::Abort {
            return Err(RolloutError::Aborted(journal.rollout_id));
        }
        for node in &mut journal.nodes {
            if let NodeStatus::Soaking { .. } = node.status {
                node.status = NodeStatus::Soaking { until_ms: journal.limits.soak_ms };
            }
        }
        Self::with_journal(client, inventory, storage, journal, settings)
    }
}
