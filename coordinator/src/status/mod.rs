//! `upkeep status`: every node's state, asked with bounded concurrency. A node
//! that cannot be read is listed with why (unreachable, an agent's error code,
//! an unreadable body, a redirect, a certificate problem, another node's
//! agent at its address), never dropped.

use std::ops::ControlFlow;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use upkeep_common::api::{NodeRole, NodeState};
use upkeep_common::ids::NodeName;

use crate::client::{AgentClient, ClientError};
use crate::inventory::{Inventory, InventoryNode};

mod json;
mod table;

pub use json::{InOrder, write_json};
pub use table::{aligned, write_table};

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

/// Asks every node of the inventory, `concurrency` at a time, and returns the
/// rows in inventory order.
pub fn fleet_status<'a>(
    client: &'a AgentClient,
    inventory: &'a Inventory,
    concurrency: usize,
) -> BoxFuture<'a, Vec<NodeStatusRow>> {
    // Boxed so that callers may spawn it.
    async move {
        let mut rows: Vec<Option<NodeStatusRow>> = (0..inventory.nodes.len()).map(|_| None).collect();
        each_row(client, inventory, concurrency, |index, row| {
            rows[index] = Some(row);
            ControlFlow::Continue(())
        })
        .await;
        rows.into_iter().flatten().collect()
    }
    .boxed()
}

/// Asks every node of the inventory, `concurrency` at a time, and hands each
/// row to `emit` with its place in the inventory as soon as it is read (a node
/// that does not answer holds back no other); stops asking when `emit` breaks.
pub async fn each_row(
    client: &AgentClient,
    inventory: &Inventory,
    concurrency: usize,
    mut emit: impl FnMut(usize, NodeStatusRow) -> ControlFlow<()>,
) {
    let nodes = &inventory.nodes;
    let mut rows = stream::iter(0..nodes.len())
        .map(|index| read_row(client, index, &nodes[index]))
        .buffer_unordered(concurrency.max(1));
    while let Some((index, row)) = rows.next().await {
        if emit(index, row).is_break() {
            return;
        }
    }
}

/// Reads one node's row (`index` is its place in the inventory) on a
/// connection that closes after the answer.
pub(crate) async fn read_row(client: &AgentClient, index: usize, node: &InventoryNode) -> (usize, NodeStatusRow) {
    (index, row_of(node, client.node_then_close(&node.address).await))
}

/// A node's row from the answer to `GET /v1/node`.
pub(crate) fn row_of(node: &InventoryNode, answer: Result<NodeState, ClientError>) -> NodeStatusRow {
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
    NodeStatusRow { name: node.name.clone(), address: node.address.clone(), role: node.role, state, unreadable }
}
