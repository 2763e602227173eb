//! The client of `upkeep serve`: typed calls for every route of the service
//! API (DESIGN.md §6) over mutual TLS, answers decoded into the service's own
//! types, errors as [`ClientError`] (the same kinds as towards an agent:
//! unreachable, certificate, the service's error envelope, a bad or too large
//! answer), and the update's event stream followed across dropped connections.
//!
//! ```no_run
//! # async fn example() -> Result<(), upkeep_coordinator::client::ClientError> {
//! use upkeep_coordinator::client::tls_config;
//! use upkeep_coordinator::service_client::{ServiceClient, ServiceSettings, UpgradeRequest};
//! let tls = tls_config("tls/ca.crt".as_ref(), "tls/ops.crt".as_ref(), "tls/ops.key".as_ref())?;
//! let service = ServiceClient::new("https://upkeep.example:8443", tls, ServiceSettings::default())?;
//! let started = service.upgrade("prod-eu", &UpgradeRequest::to("1.31"), None).await?;
//! let ended = service.follow_events("prod-eu", &started.update.id, 1, |event| println!("{}", event.seq)).await?;
//! println!("{:?}", ended.status);
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use rustls::ClientConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ClientError, ClientSettings, HttpsClient, decode, https_client, read_limited};
use crate::service::model::{Update, UpdateEvent};
use crate::service::nodes::NodeView;

mod bodies;
mod events;
mod server;

pub use crate::service::view::ClusterView;
use bodies::{ClusterList, NodeList, UpdateList, VersionPatch};
pub use bodies::{PolicyOverrides, Readiness, Tagged, UpgradeAnswer, UpgradeRequest};
pub use events::{EventLineError, EventLines, MAX_EVENT_LINE_BYTES};
pub use server::server_authority;

/// The longest answer read from the service: a cluster's nodes list runs to
/// a few megabytes on a fleet of 10,000 nodes.
pub const MAX_SERVICE_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Timeouts and retries towards the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Time allowed for one call, or for an event stream's headers.
    pub timeout: Duration,
    /// Attempts for a repeatable call (the first included).
    pub attempts: u32,
    /// Wait before the first retry; doubles each time up to [`ServiceSettings::max_backoff`].
    pub backoff: Duration,
    /// The longest wait between two retries.
    pub max_backoff: Duration,
    /// How long an event stream may stay silent (no event, no keep-alive)
    /// before it is taken as lost and opened again.
    pub stream_idle: Duration,
    /// Times in a row an event stream is opened again without receiving an
    /// event before following gives up (a restart of the service takes a few).
    pub stream_reopens: u32,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            stream_idle: Duration::from_secs(60),
            stream_reopens: 30,
        }
    }
}

/// One request to the service.
struct Call<'a> {
    method: Method,
    path: String,
    body: Option<(Bytes, &'static str)>,
    if_match: Option<&'a str>,
    repeatable: bool,
}

impl Call<'_> {
    fn get(path: String) -> Self {
        Call { method: Method::GET, path, body: None, if_match: None, repeatable: true }
    }

    fn post(path: String, repeatable: bool) -> Self {
        Call { method: Method::POST, body: Some((Bytes::from_static(b"{}"), JSON)), repeatable, ..Call::get(path) }
    }
}

const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A client of one `upkeep serve`.
#[derive(Clone)]
pub struct ServiceClient {
    http: HttpsClient,
    authority: String,
    settings: ServiceSettings,
}

impl ServiceClient {
    /// A client of the service at `server` (`https://HOST:PORT`) presenting `tls`
    /// (see [`crate::client::tls_config`]).
    pub fn new(server: &str, tls: ClientConfig, settings: ServiceSettings) -> Result<Self, ClientError> {
        let authority = server_authority(server)?;
        let pool = ClientSettings { timeout: settings.timeout, idle_per_node: 4, ..ClientSettings::default() };
        Ok(Self { http: https_client(tls, &pool), authority, settings })
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(Call::get("/healthz".into())).await?.value;
        Ok(())
    }

    /// `GET /readyz` (a replica that is not ready may answer 503 with the same shape).
    pub async fn readyz(&self) -> Result<Readiness, ClientError> {
        let (status, _, bytes) = self.exchange_with_retries(&Call::get("/readyz".into())).await?;
        if status == StatusCode::SERVICE_UNAVAILABLE
            && let Ok(readiness) = serde_json::from_slice::<Readiness>(&bytes)
        {
            return Ok(readiness);
        }
        decode(&self.authority, status, &bytes)
    }

    /// `GET /metrics`, the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (status, _, bytes) = self.exchange_with_retries(&Call::get("/metrics".into())).await?;
        if !status.is_success() {
            return decode(&self.authority, status, &bytes);
        }
        String::from_utf8(bytes.to_vec()).map_err(|error| ClientError::Decode {
            address: self.authority.clone(),
            status: status.as_u16(),
            reason: error.to_string(),
        })
    }

    /// `GET /v1/clusters`: every cluster, without history.
    pub async fn clusters(&self) -> Result<Vec<ClusterView>, ClientError> {
        let list: ClusterList = self.call(Call::get("/v1/clusters".into())).await?.value;
        Ok(list.clusters)
    }

    /// `GET /v1/clusters/{cluster}`, with the `ETag` of its spec.
    pub async fn cluster(&self, cluster: &str) -> Result<Tagged<ClusterView>, ClientError> {
        self.call(Call::get(cluster_path(cluster, "")?)).await
    }

    /// `PATCH /v1/clusters/{cluster}` with `{"version": ...}`: sets the desired
    /// version. Not repeated: a second patch while the first one's update runs is a 409.
    pub async fn set_version(
        &self,
        cluster: &str,
        version: &str,
        if_match: Option<&str>,
    ) -> Result<UpgradeAnswer, ClientError> {
        let body = self.to_body(&VersionPatch { version })?;
        let call = Call {
            method: Method::PATCH,
            body: Some((body, MERGE_PATCH)),
            if_match,
            repeatable: false,
            ..Call::get(cluster_path(cluster, "")?)
        };
        Ok(self.call(call).await?.value)
    }

    /// `POST /v1/clusters/{cluster}/upgrade`; repeated after a lost connection
    /// only when it carries a request token.
    pub async fn upgrade(
        &self,
        cluster: &str,
        request: &UpgradeRequest,
        if_match: Option<&str>,
    ) -> Result<UpgradeAnswer, ClientError> {
        let body = self.to_body(request)?;
        let call = Call {
            body: Some((body, JSON)),
            if_match,
            ..Call::post(cluster_path(cluster, "/upgrade")?, request.request_token.is_some())
        };
        Ok(self.call(call).await?.value)
    }

    /// `GET /v1/clusters/{cluster}/updates`, newest first.
    pub async fn updates(&self, cluster: &str) -> Result<Vec<Update>, ClientError> {
        let list: UpdateList = self.call(Call::get(cluster_path(cluster, "/updates")?)).await?.value;
        Ok(list.updates)
    }

    /// `GET /v1/clusters/{cluster}/updates/{id}`.
    pub async fn update(&self, cluster: &str, id: &str) -> Result<Update, ClientError> {
        Ok(self.call(Call::get(update_path(cluster, id, "")?)).await?.value)
    }

    /// `POST .../updates/{id}/pause` (repeatable: pausing twice is the same).
    pub async fn pause(&self, cluster: &str, id: &str) -> Result<Update, ClientError> {
        Ok(self.call(Call::post(update_path(cluster, id, "/pause")?, true)).await?.value)
    }

    /// `POST .../updates/{id}/resume` (repeatable).
    pub async fn resume(&self, cluster: &str, id: &str) -> Result<Update, ClientError> {
        Ok(self.call(Call::post(update_path(cluster, id, "/resume")?, true)).await?.value)
    }

    /// `POST .../updates/{id}/cancel` (repeatable).
    pub async fn cancel(&self, cluster: &str, id: &str) -> Result<Update, ClientError> {
        Ok(self.call(Call::post(update_path(cluster, id, "/cancel")?, true)).await?.value)
    }

    /// `GET /v1/clusters/{cluster}/nodes`.
    pub async fn nodes(&self, cluster: &str) -> Result<Vec<NodeView>, ClientError> {
        let list: NodeList = self.call(Call::get(cluster_path(cluster, "/nodes")?)).await?.value;
        Ok(list.nodes)
    }

    /// Follows `GET .../updates/{id}/events?from=N` from event `from` (the
    /// first is 1) until the update has ended and every event was seen,
    /// giving each event to `on_event` once, in order. A dropped or silent
    /// connection is opened again from the event after the last one seen.
    /// Answers the update as it ended.
    pub async fn follow_events(
        &self,
        cluster: &str,
        id: &str,
        from: u64,
        mut on_event: impl FnMut(&UpdateEvent),
    ) -> Result<Update, ClientError> {
        let mut next = from.max(1);
        let mut silent_opens = 0;
        let mut backoff = self.settings.backoff;
        loop {
            let before = next;
            let ended = self.read_stream(cluster, id, &mut next, &mut on_event).await;
            match ended {
                Ok(()) => {
                    let update = self.update(cluster, id).await?;
                    if update.status.is_final() {
                        return Ok(update);
                    }
                }
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => tracing::debug!(%error, next, "event stream lost"),
            }
            if next > before {
                silent_opens = 0;
                backoff = self.settings.backoff;
            }
            silent_opens += 1;
            if silent_opens > self.settings.stream_reopens {
                return Err(ClientError::Unreachable {
                    address: self.authority.clone(),
                    reason: format!("the event stream gave nothing new after {} reopenings", silent_opens - 1),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(self.settings.max_backoff);
        }
    }

    /// Reads one connection's worth of the event stream, moving `next` past
    /// every event given to `on_event`. `Ok` when the service ended the stream.
    async fn read_stream(
        &self,
        cluster: &str,
        id: &str,
        next: &mut u64,
        on_event: &mut impl FnMut(&UpdateEvent),
    ) -> Result<(), ClientError> {
        let path = format!("{}?from={next}", update_path(cluster, id, "/events")?);
        let response = self.open(&Call::get(path)).await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_limited(&self.authority, response.into_body(), MAX_SERVICE_RESPONSE_BYTES).await?;
            return decode(&self.authority, status, &bytes);
        }
        let bad_line = |error: EventLineError| ClientError::Decode {
            address: self.authority.clone(),
            status: status.as_u16(),
            reason: error.to_string(),
        };
        let mut body = response.into_body();
        let mut lines = EventLines::new();
        let mut give = |event: UpdateEvent| {
            if event.seq >= *next {
                *next = event.seq.saturating_add(1);
                on_event(&event);
            }
        };
        loop {
            let frame = tokio::time::timeout(self.settings.stream_idle, body.frame()).await.map_err(|_| {
                ClientError::Timeout { address: self.authority.clone(), timeout: self.settings.stream_idle }
            })?;
            match frame {
                None => {
                    if let Some(event) = lines.finish().map_err(bad_line)? {
                        give(event);
                    }
                    return Ok(());
                }
                Some(Err(error)) => return Err(ClientError::from_transport(&self.authority, &error)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        lines.push(&data).map_err(bad_line)?.into_iter().for_each(&mut give);
                    }
                }
            }
        }
    }

    fn to_body<T: Serialize>(&self, value: &T) -> Result<Bytes, ClientError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| ClientError::Request { address: self.authority.clone(), reason: e.to_string() })
    }

    /// Makes `call` and decodes its answer.
    async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<Tagged<T>, ClientError> {
        let (status, etag, bytes) = self.exchange_with_retries(&call).await?;
        Ok(Tagged { value: decode(&self.authority, status, &bytes)?, etag })
    }

    /// Makes `call`, again after a backoff while the service is unreachable if it is repeatable.
    async fn exchange_with_retries(&self, call: &Call<'_>) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        let attempts = if call.repeatable { self.settings.attempts.max(1) } else { 1 };
        let mut backoff = self.settings.backoff;
        let mut attempt = 1;
        loop {
            match self.exchange(call).await {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tracing::debug!(%error, attempt, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(self.settings.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One request and its whole answer, within the timeout.
    async fn exchange(&self, call: &Call<'_>) -> Result<(StatusCode, Option<String>, Bytes), ClientError> {
        let exchange = async {
            let response = self.open(call).await?;
            let status = response.status();
            let etag = response.headers().get(ETAG).and_then(|value| value.to_str().ok()).map(str::to_owned);
            let bytes = read_limited(&self.authority, response.into_body(), MAX_SERVICE_RESPONSE_BYTES).await?;
            Ok((status, etag, bytes))
        };
        tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout { address: self.authority.clone(), timeout: self.settings.timeout })?
    }

    /// Sends `call` and waits for the answer's headers, within the timeout.
    async fn open(&self, call: &Call<'_>) -> Result<Response<hyper::body::Incoming>, ClientError> {
        let address = &self.authority;
        let mut builder = Request::builder().method(call.method.clone()).uri(format!("https://{address}{}", call.path));
        if let Some((_, media)) = &call.body {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static(media));
        }
        if let Some(tag) = call.if_match {
            builder = builder.header(IF_MATCH, tag);
        }
        let request = builder
            .body(Full::new(call.body.as_ref().map(|(bytes, _)| bytes.clone()).unwrap_or_default()))
            .map_err(|e| ClientError::Request { address: address.clone(), reason: e.to_string() })?;
        let sent = tokio::time::timeout(self.settings.timeout, self.http.request(request))
            .await
            .map_err(|_| ClientError::Timeout { address: address.clone(), timeout: self.settings.timeout })?;
        sent.map_err(|error| ClientError::from_transport(address, &error))
    }
}

/// The path of a cluster, with `rest` after it.
fn cluster_path(cluster: &str, rest: &str) -> Result<String, ClientError> {
    Ok(format!("/v1/clusters/{}{rest}", server::path_segment("cluster", cluster)?))
}

/// The path of an update, with `rest` after it.
fn update_path(cluster: &str, id: &str, rest: &str) -> Result<String, ClientError> {
    Ok(format!("{}/{}{rest}", cluster_path(cluster, "/updates")?, server::path_segment("update id", id)?))
}
