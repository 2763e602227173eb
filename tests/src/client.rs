//! A small mutual-TLS HTTP/1.1 client over rustls and hyper, for tests and benches.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use upkeep_net::tls::{client_config as tls_client_config, read_certificates, read_private_key, root_store};

use crate::pki::ClientFiles;

/// A client configuration trusting `ca`, presenting `client` if given.
pub fn client_config(ca: &Path, client: Option<&ClientFiles>) -> Arc<ClientConfig> {
    let roots = root_store(read_certificates(ca, "CA").expect("CA file")).expect("CA accepted");
    let identity = client.map(|files| {
        let chain = read_certificates(&files.cert, "client certificate").expect("client certificate");
        (chain, read_private_key(&files.key).expect("client key"))
    });
    Arc::new(tls_client_config(roots, identity).expect("client credentials"))
}

/// Opens a TCP connection and completes the TLS handshake.
pub async fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(config).connect(name, tcp).await
}

/// One response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
    }
}

/// An HTTP/1.1 connection with keep-alive.
pub struct ApiClient {
    sender: SendRequest<Full<Bytes>>,
}

impl ApiClient {
    /// Connects and performs the handshake.
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<ApiClient> {
        let stream = connect_tls(addr, config).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(ApiClient { sender })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Reply, hyper::Error> {
        self.send(request(Method::GET, path, &[], Bytes::new())).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &str) -> Result<Reply, hyper::Error> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        self.send(request(Method::POST, path, &[("content-type", "application/json")], body)).await
    }
}

/// Builds a request with headers and a body.
pub fn request(method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", "upkeep");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body)).expect("valid request")
}

/// Sends `raw` bytes as they are (a request no well-behaved client would
/// build) and reads the answer until the server closes the connection.
pub async fn send_raw(addr: SocketAddr, config: Arc<ClientConfig>, raw: &[u8]) -> std::io::Result<Reply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_tls(addr, config).await?;
    stream.write_all(raw).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    parse_reply(&answer).ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {answer:?}")))
}

fn parse_reply(answer: &[u8]) -> Option<Reply> {
    let end = answer.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            hyper::header::HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    Some(Reply { status, headers, body: Bytes::copy_from_slice(&answer[end + 4..]) })
}
