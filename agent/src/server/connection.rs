//! One client connection: the mutual-TLS handshake (bounded in time; a failure
//! ends this connection only and is counted by reason), the client's identity,
//! then HTTP/1.1 with keep-alive until the client leaves, the connection idles
//! past the limit, or the server shuts down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::{CertificateError, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use upkeep_common::Identity;

use crate::app::App;
use crate::server::idle::{Activity, ActivityIo};
use crate::server::routes::{self, RequestContext};

/// Serves one accepted TCP connection to the end.
pub async fn serve_connection(
    app: Arc<App>,
    tls: Arc<ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let limits = app.config.server.clone();
    let handshake = tokio::time::timeout(limits.handshake_timeout, TlsAcceptor::from(tls).accept(tcp)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            let reason = handshake_failure_reason(&error);
            app.metrics.record_handshake_failure(reason);
            tracing::debug!(%peer, reason, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            app.metrics.record_handshake_failure("timeout");
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| Identity::from_certificate_der(leaf).ok());
    let context = Arc::new(RequestContext { app: app.clone(), identity });
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::new(stream, activity.clone()));
    let service = service_fn(move |request| {
        let context = context.clone();
        async move { Ok::<_, Infallible>(routes::handle(&context, request).await) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    app.metrics.add_open_connections(1);
    let mut idle_check = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for() >= limits.idle_timeout {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    app.metrics.add_open_connections(-1);
}

/// A short, stable label for why a handshake failed.
pub fn handshake_failure_reason(error: &std::io::Error) -> &'static str {
    let Some(tls_error) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls_error {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "certificate_expired"
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible_peer",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "protocol_error",
        rustls::Error::AlertReceived(_) => "alert_received",
        _ => "other",
    }
}
