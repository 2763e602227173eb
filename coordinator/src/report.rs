//! What a rollout tells its operator: events as they happen and the final
//! counters (patched, skipped, pending, error) with every error's node, step and
//! code. As JSON, one object per line, the last one the summary; for a person,
//! a progress bar on a terminal and one line per finished node.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::journal::{Journal, NodeError};
use crate::plan::{Halt, NodeStatus};

/// The four counters; every node is in exactly one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Upgraded.
    pub patched: usize,
    /// Already at the target.
    pub skipped: usize,
    /// Not (yet) upgraded.
    pub pending: usize,
    /// Failed.
    pub error: usize,
}

impl Counters {
    /// Counts a journal's nodes (in-flight and soaking nodes count as pending).
    pub fn of(journal: &Journal) -> Counters {
        let mut counters = Counters::default();
        for node in &journal.nodes {
            *counters.slot(node.status) += 1;
        }
        counters
    }

    /// Moves one node from the counter of `from` to the counter of `to`.
    pub fn moved(&mut self, from: NodeStatus, to: NodeStatus) {
        let left = self.slot(from);
        *left = left.saturating_sub(1);
        *self.slot(to) += 1;
    }

    fn slot(&mut self, status: NodeStatus) -> &mut usize {
        match status {
            NodeStatus::Patched => &mut self.patched,
            NodeStatus::Skipped => &mut self.skipped,
            NodeStatus::Failed => &mut self.error,
            NodeStatus::Pending | NodeStatus::InFlight | NodeStatus::Soaking { .. } => &mut self.pending,
        }
    }
}

/// The end of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The counters.
    pub counters: Counters,
    /// Every node in error.
    pub errors: Vec<NodeError>,
    /// Why it stopped early, if it did.
    pub halt: Option<Halt>,
}

/// Something that happened during a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The rollout started or resumed.
    Started {
        /// Its id.
        rollout_id: String,
        /// The target.
        target: String,
        /// How many nodes.
        nodes: usize,
    },
    /// A node's upgrade started.
    NodeStarted {
        /// The node.
        node: String,
        /// The agent's operation.
        operation: Option<String>,
    },
    /// A node finished.
    NodeFinished {
        /// The node.
        node: String,
        /// patched, skipped or error.
        outcome: String,
        /// The error, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<NodeError>,
        /// The counters after it.
        counters: Counters,
    },
    /// A control-plane node's static pods were upgraded (before any kubelet).
    StaticPodsFinished {
        /// The node.
        node: String,
        /// patched, skipped or error.
        outcome: String,
    },
    /// No new node will start.
    Halted {
        /// Why.
        reason: Halt,
    },
    /// The last event.
    Summary {
        /// The counters.
        counters: Counters,
        /// Every node in error.
        errors: Vec<NodeError>,
        /// Why it stopped early, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        halt: Option<Halt>,
    },
}

/// Where events go.
pub trait EventSink: Send {
    /// Reports one event.
    fn event(&mut self, event: &Event);
}

/// One JSON object per line on standard output.
#[derive(Debug, Default)]
pub struct JsonLines;

impl EventSink for JsonLines {
    fn event(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
    }
}

/// A progress bar on a terminal (plain lines otherwise) and a summary for a person.
pub struct Human {
    bar: Option<ProgressBar>,
}

impl Human {
    /// A reporter; the bar appears only when standard error is a terminal.
    pub fn new() -> Self {
        Self { bar: None }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Default for Human {
    fn default() -> Self {
        Self::new()
    }
}

impl EventSink for Human {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started { rollout_id, target, nodes } => {
                self.line(&format!("rollout {rollout_id}: {nodes} nodes to {target}"));
                self.bar = progress_bar(*nodes);
            }
            Event::NodeStarted { .. } => {}
            Event::NodeFinished { node, outcome, error, counters } => {
                let detail =
                    error.as_ref().map(|e| format!(": {} {} {}", e.step.as_deref().unwrap_or("-"), e.code, e.message));
                self.line(&format!("{node}: {outcome}{}", detail.unwrap_or_default()));
                if let Some(bar) = &self.bar {
                    bar.set_position((counters.patched + counters.skipped + counters.error) as u64);
                    bar.set_message(format!(
                        "patched {} skipped {} error {} pending {}",
                        counters.patched, counters.skipped, counters.error, counters.pending
                    ));
                }
            }
            Event::StaticPodsFinished { node, outcome } => self.line(&format!("{node}: static pods {outcome}")),
            Event::Halted { reason } => self.line(&format!("no new node will start: {reason}")),
            Event::Summary { counters, errors, halt } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                println!(
                    "patched {}  skipped {}  pending {}  error {}",
                    counters.patched, counters.skipped, counters.pending, counters.error
                );
                for error in errors {
                    println!(
                        "  {}: {} {}: {}",
                        error.node,
                        error.step.as_deref().unwrap_or("-"),
                        error.code,
                        error.message
                    );
                }
                if let Some(halt) = halt {
                    println!("stopped early: {halt}");
                }
            }
        }
    }
}

/// A progress bar over `nodes` nodes on standard error, when it is a terminal.
pub fn progress_bar(nodes: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(nodes as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Collects events in memory (for tests and embedding).
#[derive(Debug, Default)]
pub struct Collected(pub Vec<Event>);

impl EventSink for Collected {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_has_the_documented_shape() {
        let event = Event::Summary {
            counters: Counters { patched: 3, skipped: 1, pending: 0, error: 1 },
            errors: vec![NodeError {
                node: "worker-2".parse().expect("valid"),
                step: Some("Stage".into()),
                code: "checksum_mismatch".into(),
                message: "sha256 differs".into(),
            }],
            halt: None,
        };
        assert_eq!(
            serde_json::to_value(&event).expect("serializes"),
            serde_json::json!({"event": "summary", "counters": {"patched": 3, "skipped": 1, "pending": 0, "error": 1},
                "errors": [{"node": "worker-2", "step": "Stage", "code": "checksum_mismatch", "message": "sha256 differs"}]})
        );
    }
}
