//! One client connection: the mutual-TLS handshake (bounded in time; a failure
//! ends this connection only and is reported by reason; plain HTTP gets a
//! 400), the caller's identity, then HTTP/1.1 with keep-alive (a request hyper
//! cannot parse, or an HTTP/1.1 one without its one Host, is answered with the
//! error envelope too) until the client leaves, the connection idles past the
//! limit, or the server shuts down.
//!
//! Timeouts: the handshake and the request headers have their own; a request
//! body is read within the body read and idle timeouts (see [`crate::body`]);
//! between requests a connection idle past the idle timeout is closed
//! gracefully, and one that stays idle for another idle timeout while closing
//! (a response the client never reads) is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::{CertificateError, HandshakeKind, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use upkeep_common::{ErrorBody, ErrorCode};

use crate::body::RequestBody;
use crate::identity::peer_identity;
use crate::idle::{Activity, ActivityIo};
use crate::log::Escaped;
use crate::parse_errors::EnvelopedParseErrors;
use crate::plain_http;
use crate::response;
use crate::server::{ServerLimits, Service};

/// Put in every request's extensions: a handler that waits (a long poll) ends
/// its wait when the server starts to shut down.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Completes once the server has started to shut down.
    pub async fn started(&mut self) {
        // An error means the server is gone, which is a shutdown too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Serves one accepted TCP connection to the end.
pub async fn serve_connection<S: Service>(
    service: Arc<S>,
    tls: Arc<ServerConfig>,
    limits: &ServerLimits,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let Some(stream) = handshake(service.as_ref(), tls, limits, tcp, peer).await else { return };
    service.handshake_completed(stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed));
    let caller = Arc::new(peer_identity(stream.get_ref().1));
    if let Err(refusal) = caller.as_ref() {
        tracing::info!(%peer, reason = refusal.reason(), "client certificate names nobody; its requests are refused");
    }
    let body_limits = limits.body();
    let activity = Activity::new();
    let io = TokioIo::new(EnvelopedParseErrors::new(ActivityIo::new(stream, activity.clone())));
    let handler = service.clone();
    let requests_activity = activity.clone();
    let shutdown = stop.clone();
    let serve_request = service_fn(move |request: Request<Incoming>| {
        let service = handler.clone();
        let caller = caller.clone();
        let answering = requests_activity.answering();
        let shutdown = ShutdownSignal(shutdown.clone());
        async move {
            let _answering = answering;
            if let Some(problem) = host_problem(&request) {
                let mut refusal = response::error(&problem);
                refusal.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                return Ok::<_, Infallible>(refusal);
            }
            let mut request = request.map(|incoming| RequestBody::new(incoming, body_limits));
            request.extensions_mut().insert(shutdown);
            let response = match caller.as_ref() {
                Ok(identity) => service.call(identity, request).await,
                Err(refusal) => {
                    let response = response::error(&refusal.envelope());
                    service.refused(refusal, &response);
                    response
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let connection = builder.serve_connection(io, serve_request);
    tokio::pin!(connection);
    service.connections_changed(1);
    let mut idle_check = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, error = %Escaped(&error), "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.tick() => {
                let idle = activity.idle_for();
                if closing && idle >= limits.idle_timeout.saturating_mul(2) {
                    tracing::debug!(%peer, "connection dropped: idle while closing");
                    break;
                }
                if !closing && idle >= limits.idle_timeout {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    service.connections_changed(-1);
}

/// What the first bytes of a connection opened.
enum Opened {
    /// A TLS handshake, and how it ended (boxed: the stream is large beside a socket).
    Tls(std::io::Result<Box<TlsStream<TcpStream>>>),
    /// A plain HTTP request, not yet answered.
    PlainHttp(TcpStream),
}

/// The connection's TLS stream, once the handshake completed within its
/// timeout; `None` when it failed, timed out, or the client spoke plain HTTP
/// (answered with a 400), each counted by reason.
async fn handshake<S: Service>(
    service: &S,
    tls: Arc<ServerConfig>,
    limits: &ServerLimits,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let opening = async {
        let mut first = [0u8; plain_http::FIRST_BYTES];
        // A failed peek is left to the handshake, which fails on it the same way.
        let read = tcp.peek(&mut first).await.unwrap_or(0);
        if plain_http::is_plain_http(&first[..read]) {
            return Opened::PlainHttp(tcp);
        }
        Opened::Tls(TlsAcceptor::from(tls).accept(tcp).await.map(Box::new))
    };
    match tokio::time::timeout(limits.handshake_timeout, opening).await {
        Ok(Opened::Tls(Ok(stream))) => Some(*stream),
        Ok(Opened::Tls(Err(error))) => {
            let reason = handshake_failure_reason(&error);
            service.handshake_failed(reason);
            tracing::debug!(%peer, reason, error = %Escaped(&error), "TLS handshake failed");
            None
        }
        Ok(Opened::PlainHttp(tcp)) => {
            service.handshake_failed("plain_http");
            tracing::debug!(%peer, "plain HTTP on the TLS port; refused with 400");
            plain_http::refuse(tcp).await;
            None
        }
        Err(_) => {
            service.handshake_failed("timeout");
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Why a request cannot be served whatever its route: an HTTP/1.1 request
/// names its host exactly once (RFC 9112, section 3.2).
fn host_problem<B>(request: &Request<B>) -> Option<ErrorBody> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    match request.headers().get_all(HOST).iter().count() {
        1 => None,
        0 => Some(ErrorBody::new(ErrorCode::MalformedRequest, "an HTTP/1.1 request needs a Host header")),
        _ => Some(ErrorBody::new(ErrorCode::MalformedRequest, "the request names its Host more than once")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri("/healthz");
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).expect("a request")
    }

    #[test]
    fn an_http_1_1_request_names_its_host_once() {
        assert!(host_problem(&request(Version::HTTP_11, &["agent"])).is_none());
        assert!(host_problem(&request(Version::HTTP_10, &[])).is_none(), "HTTP/1.0 may leave it out");
        for hosts in [&[][..], &["a", "b"]] {
            let problem = host_problem(&request(Version::HTTP_11, hosts)).expect("refused");
            assert_eq!(problem.error.code, ErrorCode::MalformedRequest);
        }
    }
}
