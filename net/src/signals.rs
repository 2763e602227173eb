//! The signals upkeep's servers stop on: SIGTERM and SIGINT.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when
/// this is called, so a signal that comes before the future is first polled
/// is not lost.
pub fn termination() -> std::io::Result<impl Future<Output = ()> + Send> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}
