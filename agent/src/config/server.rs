//! `[server]`: connection and request limits of the HTTPS server.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// Connection and request limits of the HTTPS server.
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
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawServer {
    max_connections: Option<u64>,
    max_body_bytes: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

pub(super) fn validate_server(raw: RawServer, problems: &mut Problems) -> ServerLimits {
    let default = ServerLimits::default();
    ServerLimits {
        max_connections: problems.count(
            "server.max_connections",
            raw.max_connections,
            default.max_connections,
            (1, 100_000),
        ),
        max_body_bytes: problems.count(
            "server.max_body_bytes",
            raw.max_body_bytes,
            default.max_body_bytes,
            (1024, 64 * 1024 * 1024),
        ),
        handshake_timeout: problems.seconds(
            "server.handshake_timeout_secs",
            raw.handshake_timeout_secs,
            default.handshake_timeout,
            (1, 600),
        ),
        header_read_timeout: problems.seconds(
            "server.header_read_timeout_secs",
            raw.header_read_timeout_secs,
            default.header_read_timeout,
            (1, 600),
        ),
        idle_timeout: problems.seconds(
            "server.idle_timeout_secs",
            raw.idle_timeout_secs,
            default.idle_timeout,
            (1, 86_400),
        ),
        shutdown_grace: problems.seconds(
            "server.shutdown_grace_secs",
            raw.shutdown_grace_secs,
            default.shutdown_grace,
            (0, 3_600),
        ),
    }
}
