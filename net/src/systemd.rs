//! Talking to systemd: READY and STOPPING notifications, and watchdog pings at
//! half the interval systemd asks for. Without systemd (no NOTIFY_SOCKET) every
//! call does nothing.

use std::time::Duration;

/// Tells systemd the service is ready.
pub fn notify_ready() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "sd_notify READY failed");
    }
}

/// Tells systemd the service is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Pings the watchdog forever if systemd enabled it; returns at once otherwise.
pub async fn watchdog_forever() {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let mut ticker = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        ticker.tick().await;
        if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            tracing::warn!(%error, "watchdog ping failed");
        }
    }
}
