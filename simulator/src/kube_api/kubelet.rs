//! A simulated kubelet for a node of the fake API server, for an agent that runs
//! real binaries: whenever its service is restarted (the restart command appends
//! a line to a log), it reads the version the installed binary prints and posts
//! it to the Node with a fresh Ready heartbeat, as a starting kubelet does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use upkeep_common::Version;

use crate::kube_api::FakeApiServer;
use crate::kube_api::state::ApiState;

/// How often the simulated kubelet looks at the restart log.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// What the simulated kubelet posts after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletReports {
    /// The new version with a fresh heartbeat.
    VersionAndHeartbeat,
    /// The new version, but the heartbeat stays at the first start's time.
    StaleHeartbeat,
    /// Nothing: the Node keeps reporting the version of the first start.
    Nothing,
}

/// A running simulated kubelet; stops when dropped.
pub struct SimulatedKubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimulatedKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts a simulated kubelet for Node `node`, running `binary` (a script
    /// that prints `Kubernetes VERSION` somewhere in its text) and restarted
    /// whenever `restart_log` grows. It posts its first start at once.
    pub fn simulate_kubelet(
        &self,
        node: &str,
        binary: PathBuf,
        restart_log: PathBuf,
        reports: KubeletReports,
    ) -> SimulatedKubelet {
        let state = self.shared_state();
        let first = Utc::now();
        post(&state, node, &binary, first);
        let node = node.to_owned();
        let task = tokio::spawn(async move {
            let mut restarts_seen = restarts(&restart_log);
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let now_seen = restarts(&restart_log);
                if now_seen == restarts_seen {
                    continue;
                }
                restarts_seen = now_seen;
                match reports {
                    KubeletReports::VersionAndHeartbeat => post(&state, &node, &binary, Utc::now()),
                    KubeletReports::StaleHeartbeat => post(&state, &node, &binary, first),
                    KubeletReports::Nothing => {}
                }
            }
        });
        SimulatedKubelet { task }
    }
}

fn restarts(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map(|text| text.lines().count()).unwrap_or(0)
}

fn post(state: &Arc<Mutex<ApiState>>, node: &str, binary: &std::path::Path, at: chrono::DateTime<Utc>) {
    let text = std::fs::read_to_string(binary).unwrap_or_default();
    let version = Version::find_in_text(&text).map(|v| v.to_string()).unwrap_or_default();
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).kubelet_started(node, &version, at);
}
