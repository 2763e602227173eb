//! upkeep-agent: the node-side upgrade agent. It serves a mutual-TLS HTTPS API
//! through which a coordinator reads the node's state and drives upgrades of its
//! binaries and static pods.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, validated once.
//! - [`config_check`]: `--check-config`: whether what the configuration names loads.
//! - [`server`]: the API's routes and metrics, served through `upkeep-net`
//!   (accept loop, TLS credentials reloaded without dropping the listener,
//!   connection limits, caller identity, request bodies).
//! - [`node`]: the node state served by `GET /v1/node` and its `ETag`.
//! - [`store`]: durable, atomically written state files.
//! - [`host`]: traits for the host (versions, facts, files, services, health,
//!   Kubernetes) and the real implementations.
//! - [`static_pod`]: static-pod manifests and whether their new container runs.
//! - [`engine`]: operations and their steps, durability, recovery and rollback.
//! - [`app`]: what handlers and background tasks share.
//! - [`cli`]: the binary's command line.
//! - [`deadline`]: checked time arithmetic for deadlines.
//! - [`refresh`]: background refresh of versions, host facts and TLS files.
//!
//! [`run`] wires them together for the binary; tests and the simulator build the
//! pieces themselves and call [`server::serve`].

pub mod app;
pub mod availability;
pub mod cli;
pub mod config;
pub mod config_check;
pub mod deadline;
pub mod engine;
pub mod host;
pub mod node;
pub mod refresh;
pub mod server;
pub mod static_pod;
pub mod store;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::app::App;
use crate::config::AgentConfig;
use crate::host::Host;
use crate::store::{Store, StoreError};
use upkeep_net::ServerCredentials;
use upkeep_net::tls::TlsError;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS credentials are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The host could not be set up (artifact CA, Kubernetes credentials).
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The state directory could not be opened or read.
    #[error(transparent)]
    State(#[from] StoreError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the agent on a real host until SIGTERM or SIGINT; SIGHUP reloads the
/// TLS credentials.
pub async fn run(config: AgentConfig) -> Result<(), StartError> {
    let shutdown = upkeep_net::signals::termination().map_err(StartError::Signals)?;
    let hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let tls = Arc::new(ServerCredentials::load(config.tls.clone())?);
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| StartError::Bind { address: config.listen, source })?;
    let host = Host::real(&config).await?;
    let store = Store::open(&config.state_dir)?;
    let app = Arc::new(App::new(config, host, store)?);
    app.start().await;

    let mut background = tokio::task::JoinSet::new();
    background.spawn(refresh::refresh_forever(app.clone()));
    background.spawn(refresh::refresh_host_facts_forever(app.clone()));
    background.spawn(tls.clone().reload_on_change_forever());
    background.spawn(tls.clone().reload_on_signal_forever(hangup));
    background.spawn(upkeep_net::systemd::watchdog_forever());

    let address = listener.local_addr().unwrap_or(app.config.listen);
    tracing::info!(node = %app.config.node_name, "listening on {address}");
    upkeep_net::systemd::notify_ready();
    server::serve(listener, tls, app, async {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight");
        upkeep_net::systemd::notify_stopping();
    })
    .await;
    background.abort_all();
    tracing::info!("stopped");
    Ok(())
}
