//! `upkeep status`: every node's state, asked with bounded concurrency. A node
//! that cannot be read is listed with why (unreachable, an agent's error code,
//! an unreadable body, a redirect, a certificate problem, another node's
//! agent at its address), never dropped.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
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

/// How many rows the ordered reading may run ahead of the oldest unanswered
/// node, in multiples of the concurrency: this bounds the rows held back
/// while a slow node is waited for.
const AHEAD_PER_READ: usize = 16;

/// Asks every node of the inventory, `concurrency` at a time, in inventory order.
pub fn fleet_status<'a>(
    client: &'a AgentClient,
    inventory: &'a Inventory,
    concurrency: usize,
) -> BoxFuture<'a, Vec<NodeStatusRow>> {
    // Boxed so that callers may spawn it.
    async move {
        let mut rows = Vec::with_capacity(inventory.nodes.len());
        each_row_in_order(client, inventory, concurrency, |row| {
            rows.push(row);
            ControlFlow::Continue(())
        })
        .await;
        rows
    }
    .boxed()
}

/// Asks every node of the inventory, `concurrency` at a time, and hands each
/// row to `emit` in inventory order as soon as every earlier row has been
/// handed over; stops asking when `emit` breaks. A slow node holds back at
/// most the rows read while it is waited for (up to [`AHEAD_PER_READ`] times
/// the concurrency), not the fleet's, so a caller that writes rows out holds a
/// bounded number at once.
pub async fn each_row_in_order(
    client: &AgentClient,
    inventory: &Inventory,
    concurrency: usize,
    mut emit: impl FnMut(NodeStatusRow) -> ControlFlow<()>,
) {
    let nodes = &inventory.nodes;
    let concurrency = concurrency.max(1);
    let ahead = concurrency.saturating_mul(AHEAD_PER_READ);
    let mut reading = FuturesUnordered::new();
    let mut held: BTreeMap<usize, NodeStatusRow> = BTreeMap::new();
    let (mut next_read, mut next_emit) = (0, 0);
    while next_emit < nodes.len() {
        while reading.len() < concurrency && next_read < nodes.len() && next_read - next_emit < ahead {
            reading.push(read_row(client, next_read, &nodes[next_read]));
            next_read += 1;
        }
        // Never empty here: the oldest row not yet handed over is still being read.
        let Some((index, row)) = reading.next().await else { break };
        held.insert(index, row);
        while let Some(row) = held.remove(&next_emit) {
            next_emit += 1;
            if emit(row).is_break() {
                return;
            }
        }
    }
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

/// The status as an aligned text table, built a row at a time: it keeps each
/// row's cells, not its state, then lists why each unreadable node could not
/// be read.
pub struct StatusTable {
    lines: Vec<[String; 6]>,
    unreadable: Vec<String>,
}

impl Default for StatusTable {
    fn default() -> Self {
        let header = ["NODE", "ROLE", "VERSIONS", "PHASE", "CORDONED", "LAST OPERATION"].map(str::to_owned);
        Self { lines: vec![header], unreadable: Vec::new() }
    }
}

impl StatusTable {
    /// Adds one node's line (and its reason when it was unreadable).
    pub fn push(&mut self, row: &NodeStatusRow) {
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
        self.lines.push(cells);
        if let Some(why) = &row.unreadable {
            self.unreadable.push(format!("  {}: {} ({})", row.name, why.message, why.code));
        }
    }

    /// The table's text.
    pub fn render(self) -> String {
        let mut text = aligned(&self.lines);
        if !self.unreadable.is_empty() {
            text.push(String::new());
            text.push("not readable:".to_owned());
            text.extend(self.unreadable);
        }
        text.join("\n")
    }
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
