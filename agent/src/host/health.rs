//! Health checks: a component's health URL must answer 2xx, over `http://` or
//! over `https://` checked against a configured CA (the API server's `/readyz`);
//! a version URL (the API server's `/version`) must report a version.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use upkeep_common::Version;

use crate::host::{BoxFuture, connection};

/// The most of an answer's body that is read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Checks health and version URLs.
pub trait HealthProbe: Send + Sync {
    /// `Ok` when `url` answers 2xx within `timeout`; otherwise why not. An
    /// `https://` URL is checked against `ca`.
    fn check<'a>(&'a self, url: &'a str, ca: Option<&'a Path>, timeout: Duration) -> BoxFuture<'a, Result<(), String>>;
    /// The version `url` reports as `{"gitVersion": ...}`, within `timeout`.
    fn version<'a>(
        &'a self,
        url: &'a str,
        ca: Option<&'a Path>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, String>>;
}

/// HTTP and HTTPS GET over TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpHealthProbe;

impl HealthProbe for HttpHealthProbe {
    fn check<'a>(&'a self, url: &'a str, ca: Option<&'a Path>, timeout: Duration) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (status, _) = bounded(url, timeout, get(url, ca)).await?;
            if status.is_success() { Ok(()) } else { Err(format!("{url} answered {status}")) }
        })
    }

    fn version<'a>(
        &'a self,
        url: &'a str,
        ca: Option<&'a Path>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, String>> {
        Box::pin(async move {
            let (status, body) = bounded(url, timeout, get(url, ca)).await?;
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            let info: serde_json::Value =
                serde_json::from_slice(&body).map_err(|error| format!("{url}: not JSON: {error}"))?;
            let text = info["gitVersion"].as_str().ok_or_else(|| format!("{url}: no gitVersion"))?;
            text.parse().map_err(|error| format!("{url}: gitVersion {text:?}: {error}"))
        })
    }
}

async fn bounded<T>(url: &str, timeout: Duration, call: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url} did not answer within {timeout:?}")),
    }
}

async fn get(url: &str, ca: Option<&Path>) -> Result<(hyper::StatusCode, Bytes), String> {
    let failed = |error: &dyn std::fmt::Display| format!("{url}: {error}");
    let uri: Uri = url.parse().map_err(|error| failed(&error))?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url}: only http:// and https:// URLs are supported")),
    };
    let host = connection::host_of(&uri).ok_or_else(|| format!("{url}: no host"))?.to_owned();
    let tls = match secure {
        true => Some(Arc::new(upkeep_net::client::server_authenticated_client(ca).map_err(|error| failed(&error))?)),
        false => None,
    };
    let (mut sender, _connection) = connection::open(&uri, tls).await.map_err(|error| failed(&error))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|error| failed(&error))?;
    let response = sender.send_request(request).await.map_err(|error| failed(&error))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await.map_err(|error| failed(&error))?;
    Ok((status, body.to_bytes()))
}
