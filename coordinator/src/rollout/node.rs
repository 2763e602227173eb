//! One node's upgrade through its agent, all within the node's deadline: send
//! the request (again, with the same token, while the agent is unreachable or
//! answers "not now"), wait for the operation to end (the agent holds the
//! request's answer, and each later one, until it does), then read the node
//! back: it counts as patched only when it reports the target.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use upkeep_common::api::{NodeState, Operation, OperationPhase, UpgradeRequest};
use upkeep_common::ids::NodeName;

use super::answer::{Ending, Problem, check_finished_node, check_operation, ending};
use crate::client::{AgentClient, ClientError};
use crate::journal::NodeError;

/// The longest wait between two attempts at a node that is unreachable or busy.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest one request asks the agent to hold its answer until the operation ends.
const LONG_POLL: Duration = Duration::from_secs(30);

/// How one node's upgrade ended.
#[derive(Debug, Clone)]
pub(crate) enum NodeOutcome {
    Patched,
    Skipped,
    Failed { error: NodeError, unavailable: bool },
}

impl NodeOutcome {
    /// The outcome as events and counters name it: patched, skipped or error.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            NodeOutcome::Patched => "patched",
            NodeOutcome::Skipped => "skipped",
            NodeOutcome::Failed { .. } => "error",
        }
    }

    /// Node `node` failed with `problem`; `unavailable` when it may be left unable to serve.
    pub(crate) fn failed(node: &NodeName, problem: Problem, unavailable: bool) -> NodeOutcome {
        let Problem { step, code, message } = problem;
        NodeOutcome::Failed { error: NodeError { node: node.clone(), step, code, message }, unavailable }
    }
}

/// Everything one node's upgrade needs.
pub(crate) struct NodeJob {
    pub client: AgentClient,
    pub address: String,
    pub name: NodeName,
    pub request: UpgradeRequest,
    pub poll_interval: Duration,
    pub node_timeout: Duration,
}

/// Why a node's upgrade stopped early.
enum Stop {
    /// The agent answered with a permanent error.
    Client(ClientError),
    /// The answer does not match what was asked, or the node is not at the target.
    Answer(Problem),
    /// The deadline passed; the last error seen while trying, if any.
    Deadline { last: Option<ClientError>, waiting_for: String },
}

impl NodeJob {
    /// Upgrades the node (or, for a stage-only request, stages; for a dry run,
    /// checks) and says how it ended.
    pub async fn run(&self) -> NodeOutcome {
        let deadline = Instant::now().checked_add(self.node_timeout).unwrap_or_else(far_future);
        match self.upgrade(deadline).await {
            Ok(outcome) => outcome,
            Err(stop) => self.failed(stop),
        }
    }

    async fn upgrade(&self, deadline: Instant) -> Result<NodeOutcome, Stop> {
        let (client, address, request) = (&self.client, self.address.as_str(), &self.request);
        // The agent is asked to answer once the operation has ended, so an
        // upgrade that ends within the wait costs this one request.
        let wait = long_poll_within(deadline);
        let first = persist(deadline, self.poll_interval, "the agent to accept the upgrade", || {
            client.upgrade_and_wait(address, request, wait)
        })
        .await?;
        check_operation(request, None, &first).map_err(Stop::Answer)?;
        let operation = self.follow(first, deadline).await?;
        let outcome = match ending(&operation) {
            Ending::Succeeded if request.stage_only || request.dry_run => return Ok(NodeOutcome::Patched),
            Ending::Succeeded => NodeOutcome::Patched,
            Ending::AlreadyThere => NodeOutcome::Skipped,
            Ending::Failed { problem, rolled_back } => {
                return Ok(NodeOutcome::failed(&self.name, problem, rolled_back));
            }
        };
        let state: NodeState =
            persist(deadline, self.poll_interval, "the node's state", || client.node_then_close(address)).await?;
        check_finished_node(&self.name, address, &operation.id, request, &state).map_err(Stop::Answer)?;
        Ok(outcome)
    }

    /// Waits for the operation to end: each request asks the agent to hold its
    /// answer until the operation ends or [`LONG_POLL`] passes, so a node
    /// costs a few requests whatever its steps take. An agent that answers at
    /// once (one that does not wait, or whose waiting requests are full) is
    /// polled instead: soon at first, then at the poll interval.
    async fn follow(&self, mut operation: Operation, deadline: Instant) -> Result<Operation, Stop> {
        let (client, address) = (&self.client, self.address.as_str());
        let id = operation.id.clone();
        let mut pause = self.poll_interval.min(Duration::from_millis(5));
        while !operation.phase.is_terminal() {
            let waiting_for = format!("operation {id} to end (it is {:?})", operation.phase);
            let wait = long_poll_within(deadline);
            let asked = Instant::now();
            let latest = persist(deadline, self.poll_interval, &waiting_for, || {
                client.operation_past(address, &id, OperationPhase::Running, wait)
            })
            .await?;
            check_operation(&self.request, Some((&id, operation.phase)), &latest).map_err(Stop::Answer)?;
            let answered_early = wait.is_zero() || asked.elapsed() < wait / 2;
            operation = latest;
            if !operation.phase.is_terminal() && answered_early {
                if Instant::now() + pause >= deadline {
                    return Err(Stop::Deadline { last: None, waiting_for });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(self.poll_interval);
            }
        }
        Ok(operation)
    }

    fn failed(&self, stop: Stop) -> NodeOutcome {
        match stop {
            Stop::Client(error) => NodeOutcome::failed(&self.name, Problem::of_call(&error), error.is_transient()),
            Stop::Answer(found) => NodeOutcome::failed(&self.name, found, true),
            Stop::Deadline { last, waiting_for } => {
                let limit = format!("the node's deadline of {}s passed", self.node_timeout.as_secs());
                let found = match last {
                    Some(error) => Problem::new(&error.report_code(), format!("{error}; still so when {limit}")),
                    None => Problem::new("timeout", format!("{limit} waiting for {waiting_for}")),
                };
                NodeOutcome::failed(&self.name, found, true)
            }
        }
    }
}

/// Makes `call` until it answers: again after a growing wait while the agent is
/// unreachable or answers "not now" (503 `dependency_unavailable`, 409
/// `operation_in_progress`), until `deadline`.
async fn persist<T, F, Fut>(deadline: Instant, first_wait: Duration, waiting_for: &str, mut call: F) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut wait = first_wait.max(Duration::from_millis(10));
    let mut last = None;
    loop {
        let error = match tokio::time::timeout_at(deadline, call()).await {
            Err(_) => return Err(Stop::Deadline { last, waiting_for: waiting_for.to_owned() }),
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if error.is_transient() || error.is_busy() => error,
            Ok(Err(error)) => return Err(Stop::Client(error)),
        };
        tracing::debug!(%error, "trying again");
        if Instant::now() + wait >= deadline {
            return Err(Stop::Deadline { last: Some(error), waiting_for: waiting_for.to_owned() });
        }
        last = Some(error);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// The longest long poll that still answers before `deadline`, in whole seconds.
fn long_poll_within(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    Duration::from_secs(LONG_POLL.min(left.saturating_sub(Duration::from_secs(1))).as_secs())
}

/// A deadline that never comes (a node timeout too large to add to now).
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
