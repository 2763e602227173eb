//! What the simulator records of a rollout as it happens: when each node
//! started and finished (for the durations, the stretch and the timeline),
//! and the progress bar.

use std::collections::BTreeMap;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use upkeep_coordinator::report::{Event, EventSink};

use crate::report::TimelinePoint;

/// Records the coordinator's events with their times, and shows progress.
pub struct Recorder {
    /// When the rollout started.
    pub start: Instant,
    /// Nodes in flight, with when each started.
    pub started: BTreeMap<String, Instant>,
    /// Each finished node's duration in milliseconds.
    pub durations: BTreeMap<String, f64>,
    /// Patched, in flight and failed over time.
    pub timeline: Vec<TimelinePoint>,
    /// Nodes patched or skipped so far.
    pub done: usize,
    /// Nodes failed so far.
    pub failed: usize,
    /// The progress bar, on a terminal.
    pub bar: Option<ProgressBar>,
}

impl Recorder {
    /// A recorder starting now, with a progress bar of `total` nodes when `progress`.
    pub fn new(total: usize, progress: bool) -> Recorder {
        let bar = progress.then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Recorder {
            start: Instant::now(),
            started: BTreeMap::new(),
            durations: BTreeMap::new(),
            timeline: Vec::new(),
            done: 0,
            failed: 0,
            bar,
        }
    }

    fn point(&mut self) {
        let t_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.timeline.push(TimelinePoint {
            t_ms,
            patched: self.done,
            in_flight: self.started.len(),
            failed: self.failed,
        });
    }
}

impl EventSink for Recorder {
    fn event(&mut self, event: &Event) {
        self.event_at(event, Instant::now());
    }
}

impl Recorder {
    /// Records `event`, which happened `at` (events that arrive in batches
    /// carry their own time).
    pub fn event_at(&mut self, event: &Event, at: Instant) {
        match event {
            Event::NodeStarted { node, .. } => {
                self.started.insert(node.clone(), at);
                self.point();
            }
            Event::NodeFinished { node, outcome, counters, .. } => {
                if let Some(started) = self.started.remove(node) {
                    let took = at.saturating_duration_since(started);
                    self.durations.insert(node.clone(), took.as_secs_f64() * 1000.0);
                }
                self.done = counters.patched + counters.skipped;
                self.failed = counters.error;
                self.point();
                if let Some(bar) = &self.bar {
                    bar.set_position((self.done + self.failed) as u64);
                    bar.set_message(format!("patched {} error {} ({outcome} {node})", self.done, self.failed));
                }
            }
            Event::Summary { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Started { .. } | Event::Halted { .. } | Event::StaticPodsFinished { .. } => {}
        }
    }
}
