//! `upkeep status`: every node's state, asked with bounded concurrency. A node
//! that cannot be read is listed with why (unreachable, an agent's error code,
//! an unreadable body, a redirect, a certificate problem, another node's
//! agent at its address), never dropped.

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use upkeep_common::api::{NodeRole, NodeState};
use upkeep_common::ids::NodeName;

use crate::client::{AgentClient, ClientError};
use crate::inventory::{Inventory, InventoryNode};

/// Why a node's state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// A stable code: `unreachable`, `timeout`, the agent's error code,
    /// `bad_response`, `redirect`, `certificate_invalid`, `node_name_mismatch`...
    pub code: String,
    /// What happened.
    pub message: String,
}

impl Unreadable {
    fn of(error: &ClientError) -> Unreadable {
        Unreadable { code: error.report_code(), message: error.to_string() }
    }

    /// A few words for the table's phase column.
    pub fn label(&self) -> String {
        match self.code.as_str() {
            "unreachable" => "Unreachable".to_owned(),
            "timeout" => "NoAnswer".to_owned(),
            "bad_response" | "response_too_large" => "BadAnswer".to_owned(),
            "redirect" => "Redirected".to_owned(),
            "certificate_invalid" | "certificate_rejected" => "CertificateProblem".to_owned(),
            "node_name_mismatch" => "WrongNode".to_owned(),
            code => format!("Error({code})"),
        }
    }
}

/// One row of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatusRow {
    /// The node.
    pub name: NodeName,
    /// Its address.
    pub address: String,
    /// Its role from the inventory.
    pub role: NodeRole,
    /// Its state, when it could be read.
    pub state: Option<NodeState>,
    /// Why it could not be read.
    pub unreadable: Option<Unreadable>,
}

/// Asks every node of the inventory, `concurrency` at a time, in inventory order.
pub fn fleet_status<'a>(
    client: &'a AgentClient,
    inventory: &'a Inventory,
    concurrency: usize,
) -> BoxFuture<'a, Vec<NodeStatusRow>> {
    // Boxed, and indexed rather than iterated by reference, so that callers may spawn it.
    async move {
        let nodes = &inventory.nodes;
        let mut rows: Vec<(usize, NodeStatusRow)> = stream::iter(0..nodes.len())
            .map(|index| read_row(client, index, &nodes[index]))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        rows.sort_by_key(|(index, _)| *index);
        rows.into_iter().map(|(_, row)| row).collect()
    }
    .boxed()
}

/// Reads one node's row (`index` is its place in the inventory).
pub(crate) async fn read_row(client: &AgentClient, index: usize, node: &InventoryNode) -> (usize, NodeStatusRow) {
    let answer = client.node_then_close(&node.address).await;
    let (state, unreadable) = match answer {
        Ok(state) if state.name != node.name => {
            let message = format!(
                "the inventory lists {} at {}, but the agent there reports node {}",
                node.name, node.address, state.name
            );
            (None, Some(Unreadable { code: "node_name_mismatch".to_owned(), message }))
        }
        Ok(state) => (Some(state), None),
        Err(error) => (None, Some(Unreadable::of(&error))),
    };
    let row =
        NodeStatusRow { name: node.name.clone(), address: node.address.clone(), role: node.role, state, unreadable };
    (index, row)
}

/// Rows of cells as lines of left-aligned columns two spaces apart.
pub fn aligned<R: AsRef<[String]>>(rows: &[R]) -> Vec<String> {
    let columns = rows.iter().map(|row| row.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter().filter_map(|row| row.as_ref().get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.as_ref()
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// The rows as an aligned text table, then why each unreadable node could not be read.
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
                row.unreadable.as_ref().map_or_else(|| "Unknown".to_owned(), Unreadable::label),
                "-".to_owned(),
                "-".to_owned(),
            ],
        };
        lines.push(cells);
    }
    let mut text = aligned(&lines);
    let unreadable: Vec<String> = rows
        .iter()
        .filter_map(|row| row.unreadable.as_ref().map(|why| format!("  {}: {} ({})", row.name, why.message, why.code)))
        .collect();
    if !unreadable.is_empty() {
        text.push(String::new());
        text.push("not readable:".to_owned());
        text.extend(unreadable);
    }
    text.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_by_characters_and_lines_end_without_padding() {
        let rows = [
            vec!["NODE".to_owned(), "PHASE".to_owned(), "NOTE".to_owned()],
            vec!["wörker-1".to_owned(), "Idle".to_owned(), String::new()],
            vec!["cp".to_owned(), "Degraded".to_owned(), "disk".to_owned()],
        ];
        assert_eq!(aligned(&rows), ["NODE      PHASE     NOTE", "wörker-1  Idle", "cp        Degraded  disk"]);
    }
}
