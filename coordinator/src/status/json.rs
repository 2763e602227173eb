//! `upkeep status --output json`: one JSON array of the rows in inventory
//! order, written while the fleet is read. A row that arrives before those
//! ahead of it waits as its text; what waits is bounded by the reads one
//! call's timeout spans, not by the fleet's size.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::ops::ControlFlow;

use super::{NodeStatusRow, each_row};
use crate::client::AgentClient;
use crate::inventory::Inventory;
use crate::pretty_array::PrettyArray;

/// Items handed on in index order, each once every item before it has come.
#[derive(Debug)]
pub struct InOrder<T> {
    next: usize,
    held: BTreeMap<usize, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        Self { next: 0, held: BTreeMap::new() }
    }
}

impl<T> InOrder<T> {
    /// Takes item `index`, then hands `ready` every item now in order; stops when `ready` breaks.
    pub fn take(&mut self, index: usize, item: T, mut ready: impl FnMut(T) -> ControlFlow<()>) -> ControlFlow<()> {
        self.held.insert(index, item);
        while let Some(item) = self.held.remove(&self.next) {
            self.next += 1;
            if ready(item).is_break() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// How many items wait for one before them.
    pub fn waiting(&self) -> usize {
        self.held.len()
    }
}

/// Reads every node, `concurrency` at a time, and writes the rows to `out` as
/// one pretty JSON array in inventory order, then a line break; returns how
/// many nodes could not be read. A failed write stops the reading.
pub async fn write_json(
    client: &AgentClient,
    inventory: &Inventory,
    concurrency: usize,
    out: impl Write,
) -> io::Result<usize> {
    let mut array = PrettyArray::new(out);
    let mut in_order = InOrder::default();
    let mut unreadable = 0;
    let mut failed = None;
    each_row(client, inventory, concurrency, |index, row: NodeStatusRow| {
        unreadable += usize::from(row.state.is_none());
        let text = match serde_json::to_string_pretty(&row) {
            Ok(text) => text,
            Err(error) => {
                failed = Some(io::Error::from(error));
                return ControlFlow::Break(());
            }
        };
        in_order.take(index, text, |text| match array.push_pretty(&text) {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                failed = Some(error);
                ControlFlow::Break(())
            }
        })
    })
    .await;
    if let Some(error) = failed {
        return Err(error);
    }
    let mut out = array.finish()?;
    writeln!(out)?;
    out.flush()?;
    Ok(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_handed_on_in_index_order_once_the_ones_before_them_have_come() {
        let mut in_order = InOrder::default();
        let mut handed = Vec::new();
        for (index, item) in [(2, "c"), (0, "a"), (3, "d"), (1, "b"), (4, "e")] {
            let _ = in_order.take(index, item, |item| {
                handed.push(item);
                ControlFlow::Continue(())
            });
            if index == 0 {
                assert_eq!(handed, ["a"], "1 has not come, so 2 waits");
                assert_eq!(in_order.waiting(), 1);
            }
        }
        assert_eq!(handed, ["a", "b", "c", "d", "e"]);
        assert_eq!(in_order.waiting(), 0);
    }

    #[test]
    fn a_break_stops_the_handing_on() {
        let mut in_order = InOrder::default();
        let _ = in_order.take(1, "b", |_| ControlFlow::Continue(()));
        let mut handed = Vec::new();
        let flow = in_order.take(0, "a", |item| {
            handed.push(item);
            ControlFlow::Break(())
        });
        assert!(flow.is_break());
        assert_eq!(handed, ["a"]);
    }
}
