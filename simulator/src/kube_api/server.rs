//! The fake API server's HTTPS side: its own CA and certificate, bearer-token
//! authentication, the scripted delay and outage, and a kubeconfig that points
//! a client at it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use upkeep_coordinator::certs::{CertificateAuthority, CertsError, Validity};
use upkeep_net::tls::{parse_certificates, parse_private_key, server_config_without_client_auth};

use crate::kube_api::state::ApiState;

/// Why the fake server could not start.
#[derive(Debug, thiserror::Error)]
pub enum FakeApiError {
    /// Its certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// Its TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// It could not listen.
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Scripted conditions of the server.
#[derive(Debug, Default)]
struct Script {
    down: AtomicBool,
    delay_ms: AtomicU64,
}

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    script: Arc<Script>,
    ca_pem: String,
    token: String,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeApiServer {
    /// Starts a server reporting `version` on an ephemeral 127.0.0.1 port.
    pub async fn start(version: &str) -> Result<FakeApiServer, FakeApiError> {
        Self::start_on(version, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a server reporting `version` on `listen`.
    pub async fn start_on(version: &str, listen: SocketAddr) -> Result<FakeApiServer, FakeApiError> {
        let ca = CertificateAuthority::generate("fake kube-apiserver CA", Validity::days_from_now(2))?;
        let issued = ca.issue_server(
            "kube-apiserver",
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            Validity::days_from_now(2),
        )?;
        let chain = parse_certificates(issued.cert_pem.as_bytes(), "certificate")
            .map_err(|e| FakeApiError::Tls(e.to_string()))?;
        let key = parse_private_key(issued.key_pem.as_bytes()).map_err(|e| FakeApiError::Tls(e.to_string()))?;
        let config = server_config_without_client_auth(chain, key).map_err(|e| FakeApiError::Tls(e.to_string()))?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ApiState::new(version)));
        let script = Arc::new(Script::default());
        let token = format!("upkeep-fake-{:016x}", rand_token());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            state.clone(),
            script.clone(),
            token.clone(),
            stopped,
        ));
        Ok(FakeApiServer { addr, state, script, ca_pem: ca.cert_pem().to_owned(), token, stop: Some(stop) })
    }

    /// The server's state, to script it or look at it.
    pub fn state(&self) -> MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state itself, for tasks that change it on their own.
    pub(crate) fn shared_state(&self) -> Arc<Mutex<ApiState>> {
        self.state.clone()
    }

    /// Makes the server close every connection at once (true) or serve again.
    pub fn set_down(&self, down: bool) {
        self.script.down.store(down, Ordering::Relaxed);
    }

    /// Delays every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.script.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A kubeconfig (JSON, which is YAML too) with the server's CA data and token.
    pub fn kubeconfig(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": format!("https://{}", self.addr), "certificate-authority-data": ca}}],
            "users": [{"name": "upkeep-agent", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "upkeep-agent"}}],
            "current-context": "fake",
        })
        .to_string()
    }

    /// Writes [`FakeApiServer::kubeconfig`] to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn rand_token() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<ApiState>>,
    script: Arc<Script>,
    token: String,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        if script.down.load(Ordering::Relaxed) {
            drop(tcp);
            continue;
        }
        let (acceptor, state, script, token) = (acceptor.clone(), state.clone(), script.clone(), token.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |request| {
                let (state, script, token) = (state.clone(), script.clone(), token.clone());
                async move {
                    // A server that went down drops kept-alive connections too.
                    if script.down.load(Ordering::Relaxed) {
                        return Err(std::io::Error::other("the API server is down"));
                    }
                    Ok(answer(request, &state, &script, &token).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    state: &Mutex<ApiState>,
    script: &Script,
    token: &str,
) -> Response<Full<Bytes>> {
    let delay = script.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let content_type = header("content-type");
    let authorized = header("authorization") == format!("Bearer {token}");
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (code, json) = if authorized {
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.handle(&method, &path, &query, &content_type, &body, Instant::now())
    } else {
        (
            401,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}
