//! `GET .../updates/{id}/events?from=N`: an update's stored events as
//! newline-delimited JSON from sequence number `N`, then each new one as it
//! is stored, until the update has ended and every event was sent. An empty
//! line goes out every [`KEEP_ALIVE`] so that idle timeouts on the way never
//! cut a stream that waits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail};
use upkeep_net::response::{self, Body};

use super::cluster::ClusterRuntime;

/// How often a waiting stream sends an empty line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the store at once.
const PAGE: usize = 1000;
/// The largest `from` accepted.
const MAX_FROM: u64 = 1_000_000_000_000;

/// Reads `from` from the query (1 when absent).
pub fn parse_from(query: Option<&str>) -> Result<u64, ErrorBody> {
    let mut from = None;
    let mut problems = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "from" if from.is_none() => match value.parse::<u64>() {
                Ok(n) if n <= MAX_FROM => from = Some(n),
                _ => problems.push(ErrorDetail::new(
                    "from",
                    "out_of_range",
                    format!("from is a sequence number from 0 to {MAX_FROM}"),
                )),
            },
            "from" => problems.push(ErrorDetail::new("from", "repeated", "from is given more than once")),
            other => {
                let name: String = other.chars().take(64).collect();
                problems.push(ErrorDetail::new(name, "unknown_parameter", "the query takes from only"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ErrorBody::with_details(ErrorCode::ValidationFailed, "the query has invalid parameters", problems));
    }
    Ok(from.unwrap_or(1).max(1))
}

/// The stream of update `id`'s events from `from`.
pub fn stream(cluster: Arc<ClusterRuntime>, id: String, from: u64) -> Response<Body> {
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if let Err(reason) = send_events(&cluster, &id, from, &sender).await {
            tracing::debug!(update = %id, reason, "an event stream ended");
        }
    });
    response::streamed(StatusCode::OK, "application/x-ndjson", receiver)
}

async fn send_events(
    cluster: &ClusterRuntime,
    id: &str,
    from: u64,
    sender: &mpsc::Sender<Bytes>,
) -> Result<(), &'static str> {
    let mut next = from;
    let mut shutdown = cluster.shutdown.clone();
    loop {
        // Subscribed before reading, so an event stored in between still wakes the wait.
        let mut stored = {
            let state = cluster.state.lock().await;
            state.running.as_ref().filter(|r| r.log.update().id == id).map(|r| r.log.stored())
        };
        let page = cluster.records.events(cluster.name(), id, next, PAGE).await.map_err(|_| "store failed")?;
        for event in &page {
            let mut line = serde_json::to_vec(event).map_err(|_| "encoding failed")?;
            line.push(b'\n');
            sender.send(Bytes::from(line)).await.map_err(|_| "client left")?;
            next = event.seq + 1;
        }
        if page.len() == PAGE {
            continue;
        }
        let Some(stored) = stored.as_mut() else {
            // Not running: every stored event was sent.
            return Ok(());
        };
        if *stored.borrow_and_update() >= next {
            continue;
        }
        tokio::select! {
            changed = stored.changed() => {
                if changed.is_err() {
                    // The update's log is gone: it ended; send what is left.
                    continue;
                }
            }
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                sender.send(Bytes::from_static(b"\n")).await.map_err(|_| "client left")?;
            }
            () = stopping(&mut shutdown) => return Err("service stopping"),
        }
    }
}

/// Ends when the service stops.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_bounded_and_alone() {
        assert_eq!(parse_from(None).expect("valid"), 1);
        assert_eq!(parse_from(Some("from=42")).expect("valid"), 42);
        assert_eq!(parse_from(Some("from=0")).expect("valid"), 1, "0 means from the start");
        assert!(parse_from(Some("from=-1")).is_err());
        assert!(parse_from(Some("from=99999999999999999999")).is_err());
        assert!(parse_from(Some("from=1&from=2")).is_err());
        assert!(parse_from(Some("since=1")).is_err());
    }
}
