//! `upkeep status`: every node's state, asked with bounded concurrency; nodes
//! that do not answer are listed as unreachable, never dropped.

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use upkeep_common::api::{NodeRole, NodeState};
use upkeep_common::ids::NodeName;

use crate::client::AgentClient;
use crate::inventory::Inventory;

/// One row of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatusRow {
    /// The node.
    pub name: NodeName,
    /// Its address.
    pub address: String,
    /// Its role from the inventory.
    pub role: NodeRole,
    /// Its state, when it answered.
    pub state: Option<NodeState>,
    /// Why it did not answer.
    pub unreachable: Option<String>,
}

/// Asks every node of the inventory, `concurrency` at a time, in inventory order.
pub async fn fleet_status(client: &AgentClient, inventory: &Inventory, concurrency: usize) -> Vec<NodeStatusRow> {
    let mut rows: Vec<(usize, NodeStatusRow)> = stream::iter(inventory.nodes.iter().enumerate())
        .map(|(index, node)| async move {
            let answer = client.node(&node.address).await;
            let (state, unreachable) = match answer {
                Ok(state) => (Some(state), None),
                Err(error) => (None, Some(error.to_string())),
            };
            (
                index,
                NodeStatusRow {
                    name: node.name.clone(),
                    address: node.address.clone(),
                    role: node.role,
                    state,
                    unreachable,
                },
            )
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    rows.sort_by_key(|(index, _)| *index);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The rows as an aligned text table.
pub fn table(rows: &[NodeStatusRow]) -> String {
    let mut lines = vec![[
        "NODE".to_owned(),
        "ROLE".to_owned(),
        "VERSIONS".to_owned(),
        "PHASE".to_owned(),
        "CORDONED".to_owned(),
        "LAST OPERATION".to_owned(),
    ]];
    for row in rows {
        let role = match row.role {
            NodeRole::ControlPlane => "control-plane",
            NodeRole::Worker => "worker",
        };
        let cells = match &row.state {
            Some(state) => {
                let versions = state
                    .components
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={}",
                            c.name,
                            c.observed_version.as_ref().map_or("?".to_owned(), ToString::to_string)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let last = state
                    .history
                    .last()
                    .map_or("-".to_owned(), |h| format!("{:?} {} ({})", h.state, h.version, h.operation_id));
                [
                    row.name.to_string(),
                    role.to_owned(),
                    versions,
                    format!("{:?}", state.phase),
                    state.cordoned.to_string(),
                    last,
                ]
            }
            None => [
                row.name.to_string(),
                role.to_owned(),
                "-".to_owned(),
                "Unreachable".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ],
        };
        lines.push(cells);
    }
    let widths: Vec<usize> = (0..6).map(|column| lines.iter().map(|l| l[column].len()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|line| {
            line.iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
