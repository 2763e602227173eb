//! The agent API client: typed calls for every endpoint over mutual TLS, with
//! pooled keep-alive connections per node, a timeout on every call, and retries
//! only where they are safe (reads, and writes that carry a request token, which
//! the agent answers with the same operation however often they arrive).
//!
//! ```no_run
//! # async fn example() -> Result<(), upkeep_coordinator::client::ClientError> {
//! use upkeep_coordinator::client::{AgentClient, ClientSettings};
//! let tls = upkeep_coordinator::client::tls_config(
//!     "tls/ca.crt".as_ref(), "tls/ops.crt".as_ref(), "tls/ops.key".as_ref())?;
//! let client = AgentClient::new(tls, ClientSettings::default());
//! let node = client.node("127.0.0.2:10265").await?;
//! println!("{} runs {:?}", node.name, node.components[0].observed_version);
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, IF_MATCH, LOCATION};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use upkeep_common::api::{
    DrainOptions, DrainRequest, NodeState, Operation, OperationList, OperationPhase, OperationRequest, UpgradeRequest,
};
use upkeep_common::ids::{OperationId, RequestToken};
use upkeep_net::client::mutual_tls_client;

use crate::inventory::Inventory;
use sessions::NewestTicketStore;

mod answer;
mod control_plane;
mod error;
pub mod sessions;

use answer::to_body;
pub(crate) use answer::{decode, read_limited};
pub use error::{CertificateProblem, ClientError};

/// Timeouts and retries.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Time allowed for one call (connect, handshake, request and response).
    pub timeout: Duration,
    /// Attempts for a safe call (the first included).
    pub attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
    /// Idle connections kept per node.
    pub idle_per_node: usize,
    /// How long an idle connection is kept. A node's own requests follow each
    /// other within milliseconds (and a long poll is not idle), so a short
    /// time keeps them on one connection while a fan-out over a large fleet
    /// does not hold a file descriptor for every node it has read.
    pub pool_idle_timeout: Duration,
    /// Nodes whose newest TLS ticket is remembered for resumption (see
    /// [`sessions::NewestTicketStore`]): a fleet of `n` nodes resumes with
    /// every node at `n` (see [`ClientSettings::for_fleet`]); fewer, and some
    /// nodes pay a full handshake.
    pub tls_sessions: usize,
}

impl ClientSettings {
    /// The default settings with room to resume TLS sessions with every one of `nodes`.
    pub fn for_fleet(nodes: usize) -> Self {
        Self { tls_sessions: nodes.max(256), ..Self::default() }
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(200),
            idle_per_node: 1,
            pool_idle_timeout: Duration::from_secs(1),
            tls_sessions: 256,
        }
    }
}

/// A client configuration trusting `ca` and presenting `cert`/`key` (see
/// [`upkeep_net::client::mutual_tls_client`]).
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, ClientError> {
    mutual_tls_client(ca, cert, key).map_err(|error| ClientError::Tls(error.to_string()))
}

/// The longest answer read from an agent: a node's state is kilobytes and the
/// recent operations a few hundred; anything longer is an error for that node.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A client for any number of agents.
#[derive(Clone)]
pub struct AgentClient {
    http: HttpsClient,
    settings: ClientSettings,
}

/// An HTTPS-only client presenting `tls`, with the connect timeout, pool sizes
/// and TLS session cache of `settings`.
pub(crate) fn https_client(mut tls: ClientConfig, settings: &ClientSettings) -> HttpsClient {
    tls.resumption = rustls::client::Resumption::store(Arc::new(NewestTicketStore::new(settings.tls_sessions)));
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(settings.idle_per_node)
        .pool_idle_timeout(settings.pool_idle_timeout)
        .build(connector)
}

/// The `Prefer` request header (RFC 7240).
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// The HTTP client of [`https_client`].
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One request to an agent.
struct Call<'a> {
    address: &'a str,
    method: Method,
    path: &'a str,
    body: Option<Bytes>,
    if_match: Option<&'a str>,
    safety: Safety,
    /// How long the agent may hold the answer (a long poll), on top of the client's timeout.
    wait: Duration,
    /// Whether the wait is asked with `Prefer: wait` (RFC 7240) rather than in the path.
    prefer_wait: bool,
    /// Whether the connection closes after the answer instead of waiting in the pool.
    close: bool,
}

impl<'a> Call<'a> {
    /// A read: always repeatable.
    fn get(address: &'a str, path: &'a str) -> Self {
        Call {
            address,
            method: Method::GET,
            path,
            body: None,
            if_match: None,
            safety: Safety::Repeatable,
            wait: Duration::ZERO,
            prefer_wait: false,
            close: false,
        }
    }

    /// A write with a JSON body.
    fn post(address: &'a str, path: &'a str, body: Bytes, safety: Safety) -> Self {
        Call { method: Method::POST, body: Some(body), safety, ..Call::get(address, path) }
    }
}

/// Whether a call may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Safety {
    Repeatable,
    Once,
}

impl AgentClient {
    /// A client with the given TLS configuration (see [`tls_config`]).
    pub fn new(tls: ClientConfig, settings: ClientSettings) -> Self {
        Self { http: https_client(tls, &settings), settings }
    }

    /// A client for an inventory's fleet: its CA and client certificate, pool
    /// sizes for its node count, and `timeout` for one call.
    pub fn for_inventory(inventory: &Inventory, timeout: Duration) -> Result<Self, ClientError> {
        let tls = tls_config(&inventory.ca, &inventory.client_cert, &inventory.client_key)?;
        Ok(Self::new(tls, ClientSettings { timeout, ..ClientSettings::for_fleet(inventory.nodes.len()) }))
    }

    /// `GET /v1/node`.
    pub async fn node(&self, address: &str) -> Result<NodeState, ClientError> {
        self.call(Call::get(address, "/v1/node")).await
    }

    /// `GET /v1/node` on a connection that closes after the answer: for a read
    /// that is a node's last for a while (reading a whole fleet, or a node
    /// whose upgrade is done), where a pooled connection would only hold
    /// buffers and a file descriptor until it expires. Its session ticket is
    /// kept, so the next connection still resumes.
    pub async fn node_then_close(&self, address: &str) -> Result<NodeState, ClientError> {
        self.call(Call { close: true, ..Call::get(address, "/v1/node") }).await
    }

    /// `GET /v1/operations`.
    pub async fn operations(&self, address: &str) -> Result<Vec<Operation>, ClientError> {
        let list: OperationList = self.call(Call::get(address, "/v1/operations")).await?;
        Ok(list.operations)
    }

    /// `GET /v1/operations/{id}`.
    pub async fn operation(&self, address: &str, id: &OperationId) -> Result<Operation, ClientError> {
        self.call(Call::get(address, &format!("/v1/operations/{id}"))).await
    }

    /// `GET /v1/operations/{id}?wait=SECONDS&after=PHASE`: the operation once
    /// it is past `after` (Pending, then Running, then its end), or when `wait`
    /// (whole seconds, at most 30 on the agent) ends. An agent that does not
    /// wait answers at once, so a caller that gets the same phase back early
    /// falls back to polling.
    pub async fn operation_past(
        &self,
        address: &str,
        id: &OperationId,
        after: OperationPhase,
        wait: Duration,
    ) -> Result<Operation, ClientError> {
        let after = if after == OperationPhase::Pending { "Pending" } else { "Running" };
        let path = format!("/v1/operations/{id}?wait={}&after={after}", wait.as_secs());
        self.call(Call { wait, ..Call::get(address, &path) }).await
    }

    /// `POST /v1/upgrades`; retried only when it carries a request token.
    pub async fn upgrade(
        &self,
        address: &str,
        request: &UpgradeRequest,
        if_match: Option<&str>,
    ) -> Result<Operation, ClientError> {
        let call = Call { if_match, ..Self::upgrade_call(address, request)? };
        self.call(call).await
    }

    /// `POST /v1/upgrades` with `Prefer: wait`: the agent holds the answer
    /// until the operation has ended or `wait` (whole seconds) is over. An
    /// agent that does not wait answers at once, as to [`AgentClient::upgrade`].
    /// A dry run or a stage-only request closes its connection after the
    /// answer: nothing follows it on the node for a while.
    pub async fn upgrade_and_wait(
        &self,
        address: &str,
        request: &UpgradeRequest,
        wait: Duration,
    ) -> Result<Operation, ClientError> {
        let close = request.dry_run || request.stage_only;
        let call = Call { wait, prefer_wait: true, close, ..Self::upgrade_call(address, request)? };
        self.call(call).await
    }

    /// The `POST /v1/upgrades` of `request`: repeatable only when it carries a
    /// request token, which the agent answers with the same operation.
    fn upgrade_call<'a>(address: &'a str, request: &UpgradeRequest) -> Result<Call<'a>, ClientError> {
        let safety = if request.request_token.is_some() { Safety::Repeatable } else { Safety::Once };
        Ok(Call::post(address, "/v1/upgrades", to_body(request)?, safety))
    }

    /// `POST /v1/operations/{id}/cancel` (repeatable: cancelling twice is the same).
    pub async fn cancel(&self, address: &str, id: &OperationId) -> Result<Operation, ClientError> {
        let path = format!("/v1/operations/{id}/cancel");
        self.call(Call::post(address, &path, Bytes::from_static(b"{}"), Safety::Repeatable)).await
    }

    /// `POST /v1/rollback`.
    pub async fn rollback(&self, address: &str, token: Option<RequestToken>) -> Result<Operation, ClientError> {
        self.simple(address, "/v1/rollback", token).await
    }

    /// `POST /v1/cordon`.
    pub async fn cordon(&self, address: &str, token: Option<RequestToken>) -> Result<Operation, ClientError> {
        self.simple(address, "/v1/cordon", token).await
    }

    /// `POST /v1/uncordon`.
    pub async fn uncordon(&self, address: &str, token: Option<RequestToken>) -> Result<Operation, ClientError> {
        self.simple(address, "/v1/uncordon", token).await
    }

    /// `POST /v1/drain`.
    pub async fn drain(
        &self,
        address: &str,
        token: Option<RequestToken>,
        drain: Option<DrainOptions>,
    ) -> Result<Operation, ClientError> {
        let safety = if token.is_some() { Safety::Repeatable } else { Safety::Once };
        let body = to_body(&DrainRequest { request_token: token, drain })?;
        self.call(Call::post(address, "/v1/drain", body, safety)).await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self, address: &str) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(Call::get(address, "/healthz")).await?;
        Ok(())
    }

    async fn simple(&self, address: &str, path: &str, token: Option<RequestToken>) -> Result<Operation, ClientError> {
        let safety = if token.is_some() { Safety::Repeatable } else { Safety::Once };
        let body = to_body(&OperationRequest { request_token: token })?;
        self.call(Call::post(address, path, body, safety)).await
    }

    /// Makes `call`, again after a backoff while the node is unreachable if the call is repeatable.
    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ClientError> {
        let attempts = if call.safety == Safety::Repeatable { self.settings.attempts.max(1) } else { 1 };
        let mut backoff = self.settings.backoff;
        let mut attempt = 1;
        loop {
            match self.call_once(&call).await {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tracing::debug!(%error, attempt, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call_once<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, ClientError> {
        let address = call.address;
        let mut builder = Request::builder().method(call.method.clone()).uri(format!("https://{address}{}", call.path));
        if call.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(tag) = call.if_match {
            builder = builder.header(IF_MATCH, tag);
        }
        if call.close {
            builder = builder.header(CONNECTION, HeaderValue::from_static("close"));
        }
        if call.prefer_wait && !call.wait.is_zero() {
            builder = builder.header(PREFER, format!("wait={}", call.wait.as_secs()));
        }
        let request = builder
            .body(Full::new(call.body.clone().unwrap_or_default()))
            .map_err(|e| ClientError::Request { address: address.to_owned(), reason: e.to_string() })?;
        let exchange = async {
            let response =
                self.http.request(request).await.map_err(|error| ClientError::from_transport(address, &error))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).chars().take(200).collect::<String>());
                return Err(ClientError::Redirect {
                    address: address.to_owned(),
                    status: status.as_u16(),
                    location: location.unwrap_or_default(),
                });
            }
            let bytes = read_limited(address, response.into_body(), MAX_RESPONSE_BYTES).await?;
            Ok::<_, ClientError>((status, bytes))
        };
        let timeout = self.settings.timeout.saturating_add(call.wait);
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout { address: address.to_owned(), timeout })??;
        decode(address, status, &bytes)
    }
}
