//! An update followed to its end from its event stream: a progress bar and
//! one line per event for a person, or one JSON object per line; the exit
//! code says how the update ended.

use std::process::ExitCode;

use indicatif::ProgressBar;
use serde::Serialize;

use super::OutputFormat;
use super::render;
use crate::report::{Counters, progress_bar};
use crate::service::model::{EventKind, RoleCounters, Update, UpdateEvent, UpdateStatus};
use crate::service_client::ServiceClient;

/// The exit status for an update that ended as `status`: 0 Successful,
/// 1 Failed, 2 Cancelled (and 1 for a status that is not an end).
pub fn exit_status(status: UpdateStatus) -> u8 {
    match status {
        UpdateStatus::Successful => 0,
        UpdateStatus::Cancelled => 2,
        UpdateStatus::Failed | UpdateStatus::InProgress | UpdateStatus::Paused => 1,
    }
}

/// Prints what a followed update starts from: `answer` as one JSON line, or
/// a line naming the update.
pub fn print_start<T: Serialize>(output: OutputFormat, answer: &T, update: &Update) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(answer).unwrap_or_default()),
        OutputFormat::Human => {
            eprintln!("update {} of {} to {}: {:?}", update.id, update.cluster, update.target_version, update.status)
        }
    }
}

/// Follows `update` from its first event to its end.
pub async fn follow(service: &ServiceClient, update: &Update, output: OutputFormat) -> Result<ExitCode, String> {
    let mut progress = Progress::new(output, nodes(&update.counters));
    let ended = service
        .follow_events(&update.cluster, &update.id, 1, |event| progress.event(event))
        .await
        .map_err(|error| format!("following update {}: {error}", update.id))?;
    progress.finish();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&ended).map_err(|e| e.to_string())?),
        OutputFormat::Human => println!("{}", render::update(&ended)),
    }
    Ok(ExitCode::from(exit_status(ended.status)))
}

/// Every node an update's counters hold.
fn nodes(counters: &RoleCounters) -> usize {
    let total = |c: &Counters| c.patched + c.skipped + c.pending + c.error;
    total(&counters.control_plane) + total(&counters.workers)
}

/// Nodes done (not pending) by the counters.
fn done(counters: &RoleCounters) -> usize {
    nodes(counters) - counters.control_plane.pending - counters.workers.pending
}

/// Where events go while following.
struct Progress {
    output: OutputFormat,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(output: OutputFormat, nodes: usize) -> Self {
        let bar = if output == OutputFormat::Human { progress_bar(nodes) } else { None };
        Self { output, bar }
    }

    fn event(&mut self, event: &UpdateEvent) {
        if self.output == OutputFormat::Json {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
            return;
        }
        if let (Some(bar), EventKind::NodeFinished { counters, .. }) = (&self.bar, &event.kind) {
            bar.set_length(nodes(counters) as u64);
            bar.set_position(done(counters) as u64);
            bar.set_message(format!(
                "control plane {} | workers {}",
                render::counters(&counters.control_plane),
                render::counters(&counters.workers)
            ));
        }
        if let Some(line) = render::event(event) {
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_followed_update_exits_by_how_it_ended() {
        assert_eq!(exit_status(UpdateStatus::Successful), 0);
        assert_eq!(exit_status(UpdateStatus::Failed), 1);
        assert_eq!(exit_status(UpdateStatus::Cancelled), 2);
    }

    #[test]
    fn the_bar_counts_every_node_of_both_roles() {
        let counters = RoleCounters {
            control_plane: Counters { patched: 3, skipped: 0, pending: 0, error: 0 },
            workers: Counters { patched: 4, skipped: 1, pending: 5, error: 2 },
        };
        assert_eq!(nodes(&counters), 15);
        assert_eq!(done(&counters), 10);
    }
}
