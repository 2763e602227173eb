//! etcd, reached by a control-plane node's agent: a snapshot through etcd's
//! own snapshot call and etcd's health, over etcd's v3 JSON gateway (served by
//! every etcd 3.4+ on its client port) with the node's etcd client certificate
//! (mutual TLS). Endpoints are tried in order until one answers.
//!
//! Without an `[etcd]` table every call answers [`EtcdError::NotConfigured`].
//! The snapshot's stream, file and retention live in [`super::etcd_snapshot`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Response, StatusCode, Uri};
use rustls::ClientConfig;
use upkeep_common::api::{EtcdHealth, SnapshotInfo};
use upkeep_net::client::mutual_tls_client;

use crate::config::EtcdConfig;
use crate::host::BoxFuture;
use crate::host::connection::{self, ConnectError, Connection};
use crate::host::etcd_snapshot::{self, SnapshotLimits};

/// How long one endpoint may take to answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting (TCP and TLS) to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an error or health body that is read.
const SMALL_BODY_LIMIT: usize = 4096;

/// Why an etcd call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// The agent has no `[etcd]` table. Not retryable.
    #[error("[etcd] is not configured on this agent")]
    NotConfigured,
    /// The client certificate, key or CA could not be loaded. Not retryable
    /// until the files are fixed.
    #[error("etcd client credentials: {0}")]
    Credentials(String),
    /// No TCP connection (or no HTTP answer) to the endpoint. Retryable.
    #[error("etcd at {endpoint} is unreachable: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed: etcd refused the client certificate, or its
    /// own certificate is not trusted. Not retryable with the same certificates.
    #[error("TLS with etcd at {endpoint} refused: {reason}")]
    TlsRefused {
        /// The endpoint.
        endpoint: String,
        /// The TLS error.
        reason: String,
    },
    /// etcd answered, but with an error. Retryable.
    #[error("etcd at {endpoint} refused: {message}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// What etcd said.
        message: String,
    },
    /// The call did not finish in time; nothing was kept. Retryable.
    #[error("etcd snapshot did not finish within {0:?}")]
    Timeout(Duration),
    /// The snapshot is larger than `max_snapshot_bytes`; nothing was kept.
    /// Not retryable without a larger limit.
    #[error("etcd snapshot is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The stream was not a whole snapshot: bad JSON, bad base64, cut short,
    /// or data that fails etcd's own trailing sha256. Retryable.
    #[error("etcd snapshot stream from {endpoint} is corrupt: {reason}")]
    Corrupt {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The snapshot could not be written, synced or renamed. Not retryable
    /// until the disk is fixed.
    #[error("etcd snapshot file {path}: {reason}")]
    Disk {
        /// The file or directory.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
}

impl EtcdError {
    /// Whether the same call may succeed when tried again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable { .. }
                | EtcdError::Refused { .. }
                | EtcdError::Timeout(_)
                | EtcdError::Corrupt { .. }
        )
    }

    /// Whether the endpoint never answered, so that the next one is worth trying.
    fn next_endpoint_may_answer(&self) -> bool {
        matches!(self, EtcdError::Unreachable { .. } | EtcdError::TlsRefused { .. })
    }
}

/// etcd's snapshot and health.
pub trait EtcdAccess: Send + Sync {
    /// Whether etcd access is configured at all.
    fn configured(&self) -> bool;
    /// Takes a snapshot into `dir` as `etcd-snapshot-<taken_at>.db`, keeping
    /// only the newest configured number of snapshot files there. On failure
    /// no file of this snapshot is left.
    fn snapshot<'a>(&'a self, dir: &'a Path, taken_at: DateTime<Utc>)
    -> BoxFuture<'a, Result<SnapshotInfo, EtcdError>>;
    /// etcd's own health: healthy as soon as one endpoint says so.
    fn health(&self) -> BoxFuture<'_, Result<EtcdHealth, EtcdError>>;
}

/// No etcd access: every call answers [`EtcdError::NotConfigured`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEtcd;

impl EtcdAccess for NoEtcd {
    fn configured(&self) -> bool {
        false
    }

    fn snapshot<'a>(
        &'a self,
        _dir: &'a Path,
        _taken_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EtcdError>> {
        Box::pin(async { Err(EtcdError::NotConfigured) })
    }

    fn health(&self) -> BoxFuture<'_, Result<EtcdHealth, EtcdError>> {
        Box::pin(async { Err(EtcdError::NotConfigured) })
    }
}

/// etcd's JSON gateway over mutual TLS. The certificate files are read on
/// every call, so renewed ones are used without a restart.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    config: EtcdConfig,
}

impl EtcdClient {
    /// A client for the endpoints and files of `config`.
    pub fn new(config: EtcdConfig) -> Self {
        Self { config }
    }

    fn tls(&self) -> Result<Arc<ClientConfig>, EtcdError> {
        mutual_tls_client(&self.config.ca, &self.config.cert, &self.config.key)
            .map(Arc::new)
            .map_err(|error| EtcdError::Credentials(error.to_string()))
    }

    async fn take_snapshot(&self, dir: &Path, taken_at: DateTime<Utc>) -> Result<SnapshotInfo, EtcdError> {
        let tls = self.tls()?;
        let limits = SnapshotLimits { max_bytes: self.config.max_snapshot_bytes, keep: self.config.keep_snapshots };
        let mut last_error = None;
        for endpoint in &self.config.endpoints {
            let (response, _connection) =
                match send(&tls, endpoint, Method::POST, "/v3/maintenance/snapshot", "{}").await {
                    Ok(sent) => sent,
                    Err(error) if error.next_endpoint_may_answer() => {
                        tracing::warn!(endpoint, "etcd snapshot: {error}; trying the next endpoint");
                        last_error = Some(error);
                        continue;
                    }
                    Err(error) => return Err(error),
                };
            if response.status() != StatusCode::OK {
                return Err(refused(endpoint, response).await);
            }
            return etcd_snapshot::write(dir, endpoint, taken_at, response.into_body(), limits).await;
        }
        Err(last_error.unwrap_or(EtcdError::NotConfigured))
    }

    async fn check_health(&self) -> Result<EtcdHealth, EtcdError> {
        let tls = self.tls()?;
        let mut unhealthy = None;
        let mut last_error = None;
        for endpoint in &self.config.endpoints {
            let asked = async {
                let (response, _connection) = send(&tls, endpoint, Method::GET, "/health", "").await?;
                let status = response.status();
                let body = read_small(endpoint, response.into_body()).await?;
                Ok::<_, EtcdError>((status, body))
            };
            let (status, body) = match tokio::time::timeout(HEALTH_TIMEOUT, asked).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => {
                    last_error = Some(error);
                    continue;
                }
                Err(_) => {
                    let reason = format!("no answer to /health within {HEALTH_TIMEOUT:?}");
                    last_error = Some(EtcdError::Unreachable { endpoint: endpoint.clone(), reason });
                    continue;
                }
            };
            let health = health_answer(endpoint, status, &body);
            if health.healthy {
                return Ok(health);
            }
            unhealthy.get_or_insert(health);
        }
        match (unhealthy, last_error) {
            (Some(health), _) => Ok(health),
            (None, Some(error)) => Err(error),
            (None, None) => Err(EtcdError::NotConfigured),
        }
    }
}

impl EtcdAccess for EtcdClient {
    fn configured(&self) -> bool {
        true
    }

    fn snapshot<'a>(
        &'a self,
        dir: &'a Path,
        taken_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EtcdError>> {
        let timeout = self.config.snapshot_timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, self.take_snapshot(dir, taken_at)).await {
                Ok(result) => result,
                Err(_) => Err(EtcdError::Timeout(timeout)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<EtcdHealth, EtcdError>> {
        Box::pin(self.check_health())
    }
}

/// What one endpoint's `/health` answer says: healthy only for a 200 with
/// `{"health":"true"}`.
pub fn health_answer(endpoint: &str, status: StatusCode, body: &[u8]) -> EtcdHealth {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let said = parsed.as_ref().and_then(|value| value.get("health")).and_then(serde_json::Value::as_str);
    let reason = parsed.as_ref().and_then(|value| value.get("reason")).and_then(serde_json::Value::as_str);
    let healthy = status == StatusCode::OK && said == Some("true");
    let message = match (healthy, reason) {
        (true, _) => "etcd reports a leader and a quorum".to_owned(),
        (false, Some(reason)) if !reason.is_empty() => format!("etcd answered {status}: {reason}"),
        (false, _) => format!("etcd answered {status}: {}", String::from_utf8_lossy(body).trim()),
    };
    EtcdHealth { healthy, endpoint: endpoint.to_owned(), message }
}

/// Connects to `endpoint` and sends one request; the connection is served as
/// long as the returned guard is kept (while the response body is read).
async fn send(
    tls: &Arc<ClientConfig>,
    endpoint: &str,
    method: Method,
    path: &str,
    body: &'static str,
) -> Result<(Response<Incoming>, Connection), EtcdError> {
    let unreachable = |reason: String| EtcdError::Unreachable { endpoint: endpoint.to_owned(), reason };
    let uri: Uri = endpoint.parse().map_err(|_| unreachable("not a URL".to_owned()))?;
    let host = connection::host_of(&uri).unwrap_or_default().to_owned();
    let (mut sender, connection): (SendRequest<Full<Bytes>>, _) =
        match tokio::time::timeout(CONNECT_TIMEOUT, connection::open(&uri, Some(tls.clone()))).await {
            Err(_) => return Err(unreachable(format!("no connection within {CONNECT_TIMEOUT:?}"))),
            Ok(Err(error @ (ConnectError::Tls(_) | ConnectError::Http(_)))) => return Err(classify(endpoint, &error)),
            Ok(Err(error)) => return Err(unreachable(error.to_string())),
            Ok(Ok(opened)) => opened,
        };
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("upkeep-agent/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .map_err(|error| unreachable(error.to_string()))?;
    let response = sender.send_request(request).await.map_err(|error| classify(endpoint, &error))?;
    Ok((response, connection))
}

/// A TLS failure anywhere in `error`'s chain (including an alert etcd sent
/// after checking the client certificate) is [`EtcdError::TlsRefused`];
/// anything else means the endpoint did not answer.
fn classify(endpoint: &str, error: &(dyn std::error::Error + 'static)) -> EtcdError {
    let mut current = Some(error);
    while let Some(error) = current {
        let tls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|e| e.downcast_ref())
        });
        if let Some(tls) = tls {
            return EtcdError::TlsRefused { endpoint: endpoint.to_owned(), reason: tls.to_string() };
        }
        current = error.source();
    }
    EtcdError::Unreachable { endpoint: endpoint.to_owned(), reason: error.to_string() }
}

/// etcd's answer to a request it refused, with the start of its body.
async fn refused(endpoint: &str, response: Response<Incoming>) -> EtcdError {
    let status = response.status();
    let body = read_small(endpoint, response.into_body()).await.unwrap_or_default();
    let message = format!("{status}: {}", String::from_utf8_lossy(&body).trim());
    EtcdError::Refused { endpoint: endpoint.to_owned(), message }
}

/// Reads at most [`SMALL_BODY_LIMIT`] bytes of a body.
async fn read_small(endpoint: &str, mut body: Incoming) -> Result<Vec<u8>, EtcdError> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| classify(endpoint, &error))?;
        if let Some(data) = frame.data_ref() {
            let room = SMALL_BODY_LIMIT.saturating_sub(read.len());
            read.extend_from_slice(&data[..data.len().min(room)]);
            if room <= data.len() {
                break;
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_saying_true_is_healthy() {
        let healthy = health_answer("https://e:2379", StatusCode::OK, br#"{"health":"true"}"#);
        assert!(healthy.healthy);
        let no_leader = health_answer(
            "https://e:2379",
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"health":"false","reason":"NOSPACE"}"#,
        );
        assert!(!no_leader.healthy);
        assert!(no_leader.message.contains("NOSPACE"), "{}", no_leader.message);
        assert!(!health_answer("https://e:2379", StatusCode::OK, br#"{"health":"false"}"#).healthy);
        assert!(!health_answer("https://e:2379", StatusCode::OK, b"true").healthy);
    }

    #[test]
    fn tls_failures_are_told_apart_from_unreachable_endpoints() {
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert!(matches!(classify("https://e:2379", &alert), EtcdError::TlsRefused { .. }));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(classify("https://e:2379", &refused), EtcdError::Unreachable { .. }));
    }

    #[test]
    fn retryable_variants() {
        let endpoint = "https://e:2379".to_owned();
        assert!(EtcdError::Unreachable { endpoint: endpoint.clone(), reason: String::new() }.is_retryable());
        assert!(EtcdError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(EtcdError::Corrupt { endpoint: endpoint.clone(), reason: String::new() }.is_retryable());
        assert!(!EtcdError::TlsRefused { endpoint, reason: String::new() }.is_retryable());
        assert!(!EtcdError::TooLarge { limit: 1 }.is_retryable());
        assert!(!EtcdError::NotConfigured.is_retryable());
        assert!(!EtcdError::Disk { path: String::new(), reason: String::new() }.is_retryable());
    }
}
