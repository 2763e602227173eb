//! upkeep-net: the mutual-TLS HTTP plumbing that upkeep's servers (the agent's
//! API, the coordinator's service) and clients share. It knows nothing of
//! routes or of any one server's configuration.
//!
//! # Layout
//!
//! - [`tls`]: rustls configurations from PEM with the one protocol policy.
//! - [`client`]: client configurations from PEM files.
//! - [`sessions`]: the few TLS sessions a server keeps for its clients to resume.
//! - [`reload`]: server credentials reloaded on SIGHUP or file change.
//! - [`signals`]: the SIGTERM or SIGINT a server stops on.
//! - [`systemd`]: READY, STOPPING and watchdog notifications to systemd.
//! - [`server`]: the accept loop, its limits and the [`server::Service`] a server plugs in.
//! - [`connection`]: one connection: handshake, identity, HTTP/1.1, idle timeout.
//! - [`idle`]: when a connection's bytes last moved.
//! - [`plain_http`]: the 400 for plain HTTP sent to the TLS port.
//! - [`parse_errors`]: hyper's bodiless answers to unparseable requests, sent as the envelope.
//! - [`identity`]: the caller from its certificate; a nameless one is refused.
//! - [`body`]: request bodies within size and time limits, parsed as JSON objects.
//! - [`response`]: JSON responses and the error envelope.
//! - [`routing`]: methods, path templates, 405 and 403 envelopes.
//! - [`metrics`]: requests, failed handshakes and open connections, for every server.
//! - [`log`]: log fields escaped so clients cannot forge lines.

pub mod body;
pub mod client;
pub mod connection;
pub mod identity;
pub mod idle;
pub mod log;
pub mod metrics;
pub mod parse_errors;
pub mod plain_http;
pub mod reload;
pub mod response;
pub mod routing;
pub mod server;
pub mod sessions;
pub mod signals;
pub mod systemd;
pub mod tls;

pub use reload::{ServerCredentials, TlsPaths};
pub use server::{ServerLimits, Service, serve};
