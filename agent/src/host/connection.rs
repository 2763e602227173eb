//! One HTTP/1.1 connection to a URL's host, for the agent's own outgoing
//! requests (artifact fetches, health and version URLs, etcd): plain TCP for
//! `http://`, TLS with the caller's client config for `https://`. The
//! connection is served by a task that ends when its [`Connection`] guard is
//! dropped, so an abandoned request releases everything at once.

use std::sync::Arc;

use hyper::Uri;
use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Keeps a connection served; dropping it closes the connection.
pub struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why no connection could be opened. None is retryable by itself: the
/// caller knows whether another attempt or another endpoint may help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no host to connect to, or no name a certificate can match.
    #[error("{0}")]
    Address(String),
    /// The TCP connection failed.
    #[error("{0}")]
    Tcp(#[source] std::io::Error),
    /// The TLS handshake failed (the cause carries the TLS error).
    #[error("{0}")]
    Tls(#[source] std::io::Error),
    /// The HTTP/1.1 handshake failed.
    #[error("{0}")]
    Http(#[source] hyper::Error),
}

/// The host `uri` names, without the brackets of an IPv6 literal.
pub fn host_of(uri: &Uri) -> Option<&str> {
    uri.host().map(|host| host.trim_matches(['[', ']']))
}

/// Opens a connection to `uri`'s host and port (80 or 443 by default), over
/// TLS with `tls` when one is given; returns the request sender and the guard
/// that keeps the connection served.
pub async fn open<B>(uri: &Uri, tls: Option<Arc<ClientConfig>>) -> Result<(SendRequest<B>, Connection), ConnectError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let host = host_of(uri).ok_or_else(|| ConnectError::Address(format!("{uri}: no host")))?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(ConnectError::Tcp)?;
    match tls {
        Some(tls) => {
            let name = ServerName::try_from(host).map_err(|error| ConnectError::Address(error.to_string()))?;
            let stream = TlsConnector::from(tls).connect(name, tcp).await.map_err(ConnectError::Tls)?;
            handshake(TokioIo::new(stream)).await
        }
        None => handshake(TokioIo::new(tcp)).await,
    }
}

async fn handshake<IO, B>(io: TokioIo<IO>) -> Result<(SendRequest<B>, Connection), ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(ConnectError::Http)?;
    let served = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, Connection(served)))
}
