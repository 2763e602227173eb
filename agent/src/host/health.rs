//! Health checks: a component's local `http://` health URL must answer 2xx.

use std::time::Duration;

use http_body_util::Empty;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::host::BoxFuture;

/// Checks health URLs.
pub trait HealthProbe: Send + Sync {
    /// `Ok` when `url` answers 2xx within `timeout`; otherwise why not.
    fn check<'a>(&'a self, url: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), String>>;
}

/// Plain HTTP GET over TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpHealthProbe;

impl HealthProbe for HttpHealthProbe {
    fn check<'a>(&'a self, url: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, get(url)).await {
                Ok(result) => result,
                Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
            }
        })
    }
}

async fn get(url: &str) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|error| format!("{url}: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// health URLs are supported"));
    }
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?.trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|error| format!("{url}: {error}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|error| format!("{url}: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("{url}: {error}"))?;
    let response = sender.send_request(request).await.map_err(|error| format!("{url}: {error}"))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("{url} answered {}", response.status())) }
}
