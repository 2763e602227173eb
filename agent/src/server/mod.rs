//! The HTTPS server: accepts TCP connections up to the configured cap, hands each
//! to [`connection::serve_connection`] with the latest TLS configuration, and on
//! shutdown stops accepting, lets requests in flight finish (up to the grace
//! period) and returns.

pub mod body;
pub mod connection;
pub mod idle;
pub mod metrics;
pub mod response;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::tls::TlsStore;

/// Serves the API on `listener` until `shutdown` completes, then drains.
pub async fn serve(listener: TcpListener, tls: Arc<TlsStore>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.config.server.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_sender, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let tls_config = tls.current();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection::serve_connection(app, tls_config, tcp, peer, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_sender.send(true);
    let all_permits = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all_permits)).await.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the shutdown grace period");
    }
}
