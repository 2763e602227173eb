//! The HTTPS accept loop: accepts TCP connections up to the connection cap
//! (more wait in the kernel's listen backlog), serves each with the latest
//! credentials through [`crate::connection`], and on shutdown stops accepting,
//! lets requests in flight finish (up to the grace period) and returns.
//!
//! What a server does with a request is its [`Service`]; this module knows
//! nothing of routes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use upkeep_common::Identity;

use crate::body::{BodyLimits, RequestBody};
use crate::connection::serve_connection;
use crate::identity::IdentityRefused;
use crate::metrics::ServerMetrics;
use crate::reload::ServerCredentials;
use crate::response::Body;

/// Connection and request limits of an HTTPS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time allowed to send a request's whole body (408 past it).
    pub body_read_timeout: Duration,
    /// A connection with no traffic for this long is closed; a request body
    /// that stalls this long is refused (408).
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    /// The limits that apply while a request body is read.
    pub fn body(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.max_body_bytes,
            read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// What a server does with its requests, and what it wants to hear about its
/// connections (for metrics). Every request that reaches [`Service::call`]
/// comes from a caller with a verified certificate and a non-empty name.
pub trait Service: Send + Sync + 'static {
    /// Answers one request from `caller`. Never fails: every problem is an envelope.
    fn call(&self, caller: &Identity, request: Request<RequestBody>) -> impl Future<Output = Response<Body>> + Send;

    /// The server's request, handshake and connection metrics, which the
    /// hooks below keep when the server has them.
    fn metrics(&self) -> Option<&ServerMetrics> {
        None
    }

    /// A request was refused before [`Service::call`] because its connection's
    /// certificate names nobody; `response` is what was answered.
    fn refused(&self, refusal: &IdentityRefused, response: &Response<Body>) {
        if let Some(metrics) = self.metrics() {
            metrics.record_request("unauthenticated", response.status().as_u16());
        }
        tracing::info!(target: "audit", reason = refusal.reason(), "request refused: client certificate names nobody");
    }

    /// A TLS handshake completed, `resumed` from a session ticket or full.
    fn handshake_completed(&self, resumed: bool) {
        if let Some(metrics) = self.metrics() {
            metrics.record_handshake(resumed);
        }
    }

    /// A TLS handshake failed, for the stable `reason`.
    fn handshake_failed(&self, reason: &'static str) {
        if let Some(metrics) = self.metrics() {
            metrics.record_handshake_failure(reason);
        }
    }

    /// A connection opened (`+1`) or closed (`-1`) after its handshake.
    fn connections_changed(&self, delta: i64) {
        if let Some(metrics) = self.metrics() {
            metrics.add_open_connections(delta);
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then drains.
pub async fn serve<S: Service>(
    listener: TcpListener,
    credentials: Arc<ServerCredentials>,
    limits: ServerLimits,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
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
        let tls = credentials.current();
        let service = service.clone();
        let limits = limits.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(service, tls, &limits, tcp, peer, stop).await;
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
