//! `upkeep status` as a text table: a line of cells per node in inventory
//! order, whatever order the rows are read in, then why each unreadable node
//! could not be read.

use std::io::{self, Write};
use std::ops::ControlFlow;

use upkeep_common::api::NodeRole;

use super::{NodeStatusRow, Unreadable, each_row};
use crate::client::AgentClient;
use crate::inventory::Inventory;

/// Reads every node, `concurrency` at a time, and writes the table to `out`
/// once all are read, then a line break; returns how many nodes could not be read.
pub async fn write_table(
    client: &AgentClient,
    inventory: &Inventory,
    concurrency: usize,
    mut out: impl Write,
) -> io::Result<usize> {
    let (mut table, mut unreadable) = (StatusTable::new(inventory.nodes.len()), 0);
    each_row(client, inventory, concurrency, |index, row| {
        unreadable += usize::from(row.state.is_none());
        table.set(index, &row);
        ControlFlow::Continue(())
    })
    .await;
    writeln!(out, "{}", table.render())?;
    out.flush()?;
    Ok(unreadable)
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

/// One node's line, and why it could not be read when so.
type Line = ([String; 6], Option<String>);

/// The status as an aligned text table, filled a row at a time in any order:
/// it keeps each row's cells, not its state.
struct StatusTable {
    lines: Vec<Option<Line>>,
}

impl StatusTable {
    /// A table with room for `nodes` rows.
    pub fn new(nodes: usize) -> Self {
        Self { lines: (0..nodes).map(|_| None).collect() }
    }

    /// Sets the line of the node at `index` in the inventory (ignored beyond the room).
    pub fn set(&mut self, index: usize, row: &NodeStatusRow) {
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
        let why = row.unreadable.as_ref().map(|why| format!("  {}: {} ({})", row.name, why.message, why.code));
        if let Some(line) = self.lines.get_mut(index) {
            *line = Some((cells, why));
        }
    }

    /// The table's text: the lines in inventory order, then why each
    /// unreadable node could not be read.
    pub fn render(self) -> String {
        let header = ["NODE", "ROLE", "VERSIONS", "PHASE", "CORDONED", "LAST OPERATION"].map(str::to_owned);
        let mut rows = Vec::with_capacity(self.lines.len() + 1);
        rows.push(header);
        let mut reasons = Vec::new();
        for (cells, reason) in self.lines.into_iter().flatten() {
            rows.push(cells);
            reasons.extend(reason);
        }
        let mut text = aligned(&rows);
        if !reasons.is_empty() {
            text.push(String::new());
            text.push("not readable:".to_owned());
            text.extend(reasons);
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
