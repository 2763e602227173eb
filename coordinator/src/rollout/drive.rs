//! The rollout's loop: asks the planner what to start, starts those nodes'
//! upgrades, gathers the ones that end into the next decision, and keeps the
//! planner's view of the journal current by copying only what changed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::node::NodeOutcome;
use super::{CONTROL_INTERVAL, JOURNAL_FLUSH_INTERVAL, PLAN_INTERVAL, Rollout, RolloutError, observe};
use crate::control::Control;
use crate::plan::{Halt, NodeStatus, plan};
use crate::report::{Event, EventSink};

impl Rollout {
    /// Starts nodes as the planner allows and records them as they finish,
    /// until the plan is complete or a stop's wait ends; returns why nodes
    /// stopped starting, if they did.
    pub(super) async fn drive(&mut self, sink: &mut dyn EventSink) -> Result<Option<Halt>, RolloutError> {
        let clock = Instant::now();
        let mut tasks: JoinSet<(usize, Finished)> = JoinSet::new();
        let mut soak_checks: HashSet<usize> = HashSet::new();
        for index in 0..self.journal.nodes.len() {
            if self.journal.nodes[index].status == NodeStatus::InFlight {
                self.spawn_upgrade(&mut tasks, index);
            }
        }
        let mut reported_halt = None;
        let mut last_flush = Instant::now();
        let mut stop_since: Option<Instant> = None;
        let mut last_plan;
        let mut control = self.storage.control.read();
        let mut control_read = Instant::now();
        // Observing the pending nodes changed them without marking them changed.
        self.refresh_plan_view();
        loop {
            let signalled = self.stop.load(Ordering::Relaxed);
            if signalled && stop_since.is_none() {
                stop_since = Some(Instant::now());
            }
            if control_read.elapsed() >= CONTROL_INTERVAL {
                control = self.storage.control.read();
                control_read = Instant::now();
            }
            let stopped = signalled || control != Control::Run;
            let now_ms = millis_since(clock);
            last_plan = Instant::now();
            self.refresh_changed_plan_view();
            let decision = plan(&self.plan_view, &self.journal.limits, stopped, now_ms);
            for &index in &decision.end_soak {
                if soak_checks.insert(index) {
                    let (client, address) = (self.client.clone(), self.address(index));
                    tasks.spawn(async move {
                        (index, Finished::Soak { ready: observe::still_ready(&client, &address).await })
                    });
                }
            }
            if !decision.start.is_empty() {
                for &index in &decision.start {
                    // The planner's view is behind the journal if this fails: a node would start twice.
                    debug_assert_eq!(self.journal.nodes[index].status, NodeStatus::Pending, "node {index}");
                    self.journal.nodes[index].status = NodeStatus::InFlight;
                    self.changed(index);
                }
                // Logged before any request goes out, so a resume knows every node it may have started.
                self.log_changes().await?;
                last_flush = Instant::now();
                for &index in &decision.start {
                    self.spawn_upgrade(&mut tasks, index);
                    sink.event(&Event::NodeStarted {
                        node: self.journal.nodes[index].name.to_string(),
                        operation: None,
                    });
                }
            }
            if decision.halt != reported_halt {
                if let Some(reason) = &decision.halt {
                    sink.event(&Event::Halted { reason: reason.clone() });
                }
                reported_halt = decision.halt.clone();
            }
            if decision.complete {
                break;
            }
            if stop_since.is_some_and(|since| since.elapsed() >= self.settings.stop_timeout) {
                tasks.abort_all();
                let running = self.journal.nodes.iter().filter(|n| n.status.is_active()).count();
                let reason = Halt::StopWaitEnded { running };
                sink.event(&Event::Halted { reason: reason.clone() });
                reported_halt = Some(reason);
                break;
            }
            tokio::select! {
                finished = tasks.join_next(), if !tasks.is_empty() => {
                    self.absorb(finished, &mut tasks, &mut soak_checks, clock, sink);
                    // Nodes finish in bursts: gather a few milliseconds of them into one decision.
                    if let Some(rest) = PLAN_INTERVAL.checked_sub(last_plan.elapsed()) {
                        tokio::time::sleep(rest).await;
                        let more = tasks.try_join_next();
                        self.absorb(more, &mut tasks, &mut soak_checks, clock, sink);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if !self.unlogged.is_empty() && last_flush.elapsed() >= JOURNAL_FLUSH_INTERVAL {
                self.log_changes().await?;
                last_flush = Instant::now();
            }
        }
        Ok(reported_halt)
    }

    /// Records the driver tasks that ended, `first` and every other one
    /// already done, and reports each.
    fn absorb(
        &mut self,
        first: Option<Result<(usize, Finished), tokio::task::JoinError>>,
        tasks: &mut JoinSet<(usize, Finished)>,
        soak_checks: &mut HashSet<usize>,
        clock: Instant,
        sink: &mut dyn EventSink,
    ) {
        let now_ms = millis_since(clock);
        let mut next = first;
        while let Some(result) = next {
            if let Ok((index, finished)) = result {
                let (outcome, soak_over) = match finished {
                    Finished::Upgrade(outcome) => (outcome, false),
                    Finished::Soak { ready } => {
                        soak_checks.remove(&index);
                        (self.soak_outcome(index, ready), true)
                    }
                };
                if let Some(event) = self.record_outcome(index, outcome, now_ms, soak_over) {
                    sink.event(&event);
                }
            }
            next = tasks.try_join_next();
        }
    }

    /// Marks a node changed in the journal: to be written, and to be copied into the planner's view.
    pub(super) fn changed(&mut self, index: usize) {
        self.unlogged.push(index);
        self.unplanned.push(index);
    }

    /// Copies each node's progress from the journal into the planner's view.
    fn refresh_plan_view(&mut self) {
        self.unplanned = (0..self.journal.nodes.len()).collect();
        self.refresh_changed_plan_view();
    }

    /// Copies the progress of the nodes changed since the last copy: a
    /// decision then costs the planner's pass, not a copy of the journal.
    fn refresh_changed_plan_view(&mut self) {
        for index in std::mem::take(&mut self.unplanned) {
            let (view, node) = (&mut self.plan_view[index], &self.journal.nodes[index]);
            view.status = node.status;
            view.unavailable = node.unavailable;
        }
    }

    fn spawn_upgrade(&self, tasks: &mut JoinSet<(usize, Finished)>, index: usize) {
        let job = self.job(index, false);
        tasks.spawn(async move { (index, Finished::Upgrade(job.run().await)) });
    }
}

/// What a driver task reports.
enum Finished {
    /// A node's upgrade ended.
    Upgrade(NodeOutcome),
    /// A node's soak ended; whether it was still Ready.
    Soak { ready: bool },
}

fn millis_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}
