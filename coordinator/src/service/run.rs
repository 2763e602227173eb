//! Running `upkeep serve`: open the service, listen with its mutual TLS
//! (credentials reloaded when their files change or on SIGHUP), tell systemd
//! it is ready, and on SIGTERM or SIGINT stop accepting, let every update's
//! workflow reach a safe point (its update stays InProgress for the next
//! start), and return.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use upkeep_net::{ServerCredentials, ServerLimits, TlsPaths, systemd};

use super::api::ServiceHandler;
use super::app::{ServiceApp, ServiceError};
use super::cluster::ServiceSettings;
use super::config::ServiceConfig;

/// How often the service's TLS files are checked for changes.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Why `upkeep serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The service could not open.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The TLS files could not be loaded.
    #[error("the service's TLS files: {0}")]
    Tls(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves until SIGTERM or SIGINT.
pub async fn serve(config: ServiceConfig, settings: ServiceSettings) -> Result<(), ServeError> {
    let shutdown = upkeep_net::signals::termination().map_err(ServeError::Signals)?;
    let hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let paths = TlsPaths {
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        client_ca: config.tls.client_ca.clone(),
        reload_interval: Some(TLS_RELOAD_INTERVAL),
    };
    let credentials = Arc::new(ServerCredentials::load(paths).map_err(|e| ServeError::Tls(e.to_string()))?);
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { address: config.listen, source })?;
    let app = ServiceApp::open(&config, settings).await?;
    let mut background = tokio::task::JoinSet::new();
    background.spawn(credentials.clone().reload_on_change_forever());
    background.spawn(credentials.clone().reload_on_signal_forever(hangup));
    background.spawn(systemd::watchdog_forever());
    let address = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(clusters = app.clusters.len(), "listening on {address}");
    systemd::notify_ready();
    let handler = Arc::new(ServiceHandler { app: app.clone() });
    let stopping = app.clone();
    upkeep_net::serve(listener, credentials, ServerLimits::default(), handler, async move {
        shutdown.await;
        tracing::info!("shutting down: updates stop at their next safe point");
        systemd::notify_stopping();
        stopping.stop().await;
    })
    .await;
    background.abort_all();
    tracing::info!("stopped");
    Ok(())
}
