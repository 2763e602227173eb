//! `[server]`: connection and request limits of the HTTPS server (the
//! limits themselves are `upkeep-net`'s).

use serde::Deserialize;
pub use upkeep_net::ServerLimits;

use super::problems::Problems;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawServer {
    max_connections: Option<u64>,
    max_body_bytes: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
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
        body_read_timeout: problems.seconds(
            "server.body_read_timeout_secs",
            raw.body_read_timeout_secs,
            default.body_read_timeout,
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
