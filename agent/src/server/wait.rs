//! The long poll of `GET /v1/operations/{id}?wait=SECONDS&after=PHASE`: the
//! answer comes once the operation is past `after` (Pending, then Running,
//! then its end), or when the wait ends, or when the agent shuts down, so a
//! coordinator waits instead of polling. `after` defaults to the phase the
//! operation has when the request arrives. At most [`MAX_WAITING`] requests
//! wait at once; one more is answered at once, as without `wait`.
//!
//! `POST /v1/upgrades` with `Prefer: wait=SECONDS` (RFC 7240) waits the same
//! way before it answers, until the operation it accepted has ended, so an
//! upgrade can cost one request.

use std::time::Duration;

use hyper::HeaderMap;
use hyper::header::HeaderName;
use tokio::sync::Semaphore;
use upkeep_common::api::{Operation, OperationPhase};
use upkeep_common::ids::OperationId;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail};
use upkeep_net::connection::ShutdownSignal;

use crate::engine::Engine;
use crate::server::metrics::Metrics;

/// The longest wait a request may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
/// Requests waiting at once; each also holds one of the server's connections.
pub const MAX_WAITING: usize = 256;

/// What a request asked to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitQuery {
    /// How long at most.
    pub wait: Duration,
    /// Answer once the operation is past this phase; `None`: past the phase it has now.
    pub after: Option<OperationPhase>,
}

/// Reads the query of `GET /v1/operations/{id}`: no `wait` means answer at
/// once (an `after` alone changes nothing). Unknown keys, a repeated key, a
/// wait that is not a whole number of seconds from 0 to [`MAX_WAIT_SECS`], or
/// an `after` other than `Pending` or `Running` are a 422 naming the key.
pub fn parse_query(query: Option<&str>) -> Result<Option<WaitQuery>, ErrorBody> {
    let mut wait = None;
    let mut after = None;
    let mut problems = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "wait" if wait.is_none() => match value.parse::<u64>() {
                Ok(seconds) if seconds <= MAX_WAIT_SECS => wait = Some(Duration::from_secs(seconds)),
                _ => problems.push(ErrorDetail::new(
                    "wait",
                    "out_of_range",
                    format!("wait is a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
                )),
            },
            "after" if after.is_none() => match value.as_ref() {
                "Pending" => after = Some(OperationPhase::Pending),
                "Running" => after = Some(OperationPhase::Running),
                _ => problems.push(ErrorDetail::new("after", "invalid_value", "after is Pending or Running")),
            },
            "wait" | "after" => {
                problems.push(ErrorDetail::new(key.as_ref(), "repeated", format!("{key} is given more than once")));
            }
            other => {
                let name: String = other.chars().take(64).collect();
                problems.push(ErrorDetail::new(name, "unknown_parameter", "the query takes wait and after only"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ErrorBody::with_details(ErrorCode::ValidationFailed, "the query has invalid parameters", problems));
    }
    Ok(wait.map(|wait| WaitQuery { wait, after }))
}

/// The `Prefer` request header (RFC 7240).
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
/// The response header naming the preferences a server honoured (RFC 7240).
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The wait a request prefers by `Prefer: wait=SECONDS`, cut to [`MAX_WAIT_SECS`].
/// As RFC 7240 asks, a preference that cannot be read is ignored, not refused;
/// so is a wait of zero.
pub fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    let preferences = headers.get_all(PREFER).iter().filter_map(|value| value.to_str().ok());
    let seconds = preferences
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.split(';').next()?.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("wait"))
        .and_then(|(_, value)| value.trim().trim_matches('"').parse::<u64>().ok())?;
    (seconds > 0).then(|| Duration::from_secs(seconds.min(MAX_WAIT_SECS)))
}

/// An operation as a wait left it.
#[derive(Debug)]
pub struct Waited {
    /// The operation.
    pub operation: Operation,
    /// False when the answer came at once only because every waiting place
    /// was taken; true when it came after the wait, or needed none.
    pub honoured: bool,
}

/// The operation once it is past the asked phase, the wait ends, or the agent
/// shuts down; `None` when there is no such operation.
pub async fn operation_when_past(
    engine: &Engine,
    waiting: &Semaphore,
    metrics: &Metrics,
    id: &OperationId,
    query: WaitQuery,
    shutdown: Option<ShutdownSignal>,
) -> Option<Waited> {
    let mut changes = engine.changes();
    changes.borrow_and_update();
    let operation = engine.operation(id)?;
    let after = query.after.unwrap_or(operation.phase);
    if operation.phase.is_past(after) || operation.phase.is_terminal() || query.wait.is_zero() {
        return Some(Waited { operation, honoured: true });
    }
    let Ok(_permit) = waiting.try_acquire() else {
        return Some(Waited { operation, honoured: false });
    };
    let _counted = Waiting::start(metrics);
    let latest = changed_past(engine, id, after, query.wait, changes, shutdown).await?;
    Some(Waited { operation: latest, honoured: true })
}

/// Waits on `changes` until operation `id` is past `after`, `wait` is over or
/// the agent shuts down, and returns the operation then.
async fn changed_past(
    engine: &Engine,
    id: &OperationId,
    after: OperationPhase,
    wait: Duration,
    mut changes: tokio::sync::watch::Receiver<u64>,
    mut shutdown: Option<ShutdownSignal>,
) -> Option<Operation> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let shutting_down = async {
            match shutdown.as_mut() {
                Some(signal) => signal.started().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => {
                let latest = engine.operation(id)?;
                if changed.is_err() || latest.phase.is_past(after) {
                    return Some(latest);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return engine.operation(id),
            _ = shutting_down => return engine.operation(id),
        }
    }
}

/// A request counted in the waiting-requests gauge until it drops.
struct Waiting<'m>(&'m Metrics);

impl<'m> Waiting<'m> {
    fn start(metrics: &'m Metrics) -> Self {
        metrics.add_waiting_requests(1);
        Waiting(metrics)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.add_waiting_requests(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(PREFER, value.parse().expect("header value"));
        }
        preferred_wait(&headers)
    }

    #[test]
    fn a_preferred_wait_is_read_cut_to_its_bound_or_ignored() {
        assert_eq!(prefer(&["wait=10"]), Some(Duration::from_secs(10)));
        assert_eq!(prefer(&["respond-async, Wait=\"7\""]), Some(Duration::from_secs(7)));
        assert_eq!(prefer(&["handling=lenient", "wait=3; extra"]), Some(Duration::from_secs(3)));
        assert_eq!(prefer(&["wait=3600"]), Some(Duration::from_secs(MAX_WAIT_SECS)), "cut to the bound");
        assert_eq!(prefer(&["wait=18446744073709551616"]), None, "too large to read: ignored");
        for ignored in ["wait=0", "wait=-1", "wait=soon", "wait", "return=minimal"] {
            assert_eq!(prefer(&[ignored]), None, "{ignored}");
        }
        assert_eq!(prefer(&[]), None);
    }

    #[test]
    fn the_query_is_bounded_and_every_problem_named() {
        assert_eq!(parse_query(None), Ok(None));
        assert_eq!(parse_query(Some("")), Ok(None));
        assert_eq!(
            parse_query(Some("wait=30&after=Running")),
            Ok(Some(WaitQuery { wait: Duration::from_secs(30), after: Some(OperationPhase::Running) }))
        );
        assert_eq!(parse_query(Some("wait=0")), Ok(Some(WaitQuery { wait: Duration::ZERO, after: None })));
        let field = |query: &str| {
            let error = parse_query(Some(query)).expect_err(query);
            assert_eq!(error.error.code, ErrorCode::ValidationFailed, "{query}");
            error.error.details.iter().map(|d| d.field.clone()).collect::<Vec<_>>()
        };
        assert_eq!(field("wait=31"), ["wait"]);
        assert_eq!(field("wait=18446744073709551616"), ["wait"]);
        assert_eq!(field("wait=-1"), ["wait"]);
        assert_eq!(field("wait=1.5"), ["wait"]);
        assert_eq!(field("wait=1&after=Succeeded"), ["after"]);
        assert_eq!(field("wait=1&wait=2"), ["wait"]);
        assert_eq!(parse_query(Some("after=Running")), Ok(None), "without a wait, the answer comes at once");
        assert_eq!(field("wait=1&pretty=1"), ["pretty"]);
    }
}
