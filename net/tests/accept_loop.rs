//! The accept loop with a service of its own (no agent): callers named by their
//! certificates, nameless ones refused, and a response the client never reads
//! does not hold its connection past the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hyper::{Request, Response, StatusCode};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use upkeep_common::Identity;
use upkeep_net::body::RequestBody;
use upkeep_net::response::{self, Body};
use upkeep_net::tls::{client_config, parse_certificates, parse_private_key, root_store, server_config};
use upkeep_net::{ServerCredentials, ServerLimits, Service};

/// Generous bound for what should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(20);

/// Names the caller, or sends a body far larger than socket buffers hold.
#[derive(Default)]
struct Echo {
    open: AtomicI64,
}

impl Service for Echo {
    async fn call(&self, caller: &Identity, request: Request<RequestBody>) -> Response<Body> {
        if request.uri().path() == "/large" {
            return response::with_body(StatusCode::OK, "application/octet-stream", vec![0u8; 64 << 20]);
        }
        response::json(StatusCode::OK, &serde_json::json!({ "caller": caller.common_name }))
    }

    fn connections_changed(&self, delta: i64) {
        self.open.fetch_add(delta, Ordering::SeqCst);
    }
}

/// A CA, a server certificate for 127.0.0.1, and client certificates by Common Name.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "test CA");
        let key = KeyPair::generate().expect("CA key");
        let ca_pem = params.self_signed(&key).expect("CA").pem();
        Pki { issuer: Issuer::new(params, key), ca_pem }
    }

    fn issue(&self, names: Vec<String>, common_name: &str) -> (String, String) {
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "upkeep:reader");
        let key = KeyPair::generate().expect("key");
        (params.signed_by(&key, &self.issuer).expect("certificate").pem(), key.serialize_pem())
    }

    fn client(&self, common_name: &str) -> Arc<ClientConfig> {
        let (cert, key) = self.issue(Vec::new(), common_name);
        let roots = root_store(parse_certificates(self.ca_pem.as_bytes(), "CA").expect("CA")).expect("roots");
        let identity = (
            parse_certificates(cert.as_bytes(), "cert").expect("cert"),
            parse_private_key(key.as_bytes()).expect("key"),
        );
        Arc::new(client_config(roots, Some(identity)).expect("client config"))
    }
}

async fn start(pki: &Pki, limits: ServerLimits) -> (SocketAddr, Arc<Echo>) {
    let (cert, key) = pki.issue(vec!["127.0.0.1".to_owned()], "server");
    let config = server_config(
        parse_certificates(pki.ca_pem.as_bytes(), "CA").expect("CA"),
        parse_certificates(cert.as_bytes(), "cert").expect("cert"),
        parse_private_key(key.as_bytes()).expect("key"),
    )
    .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let service = Arc::new(Echo::default());
    let credentials = Arc::new(ServerCredentials::fixed(config));
    tokio::spawn(upkeep_net::serve(listener, credentials, limits, service.clone(), std::future::pending()));
    (addr, service)
}

async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    TlsConnector::from(config).connect(ServerName::IpAddress(addr.ip().into()), tcp).await.expect("handshake")
}

async fn get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> String {
    let mut stream = connect(addr, config).await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await.expect("answered in time");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn callers_are_named_by_their_certificates_and_nameless_ones_refused() {
    let pki = Pki::new();
    let (addr, _) = start(&pki, ServerLimits::default()).await;
    let named = get(addr, pki.client("ops-1"), "/").await;
    assert!(named.starts_with("HTTP/1.1 200") && named.contains(r#"{"caller":"ops-1"}"#), "{named}");
    let nameless = get(addr, pki.client(""), "/").await;
    assert!(nameless.starts_with("HTTP/1.1 401") && nameless.contains(r#""code":"unauthenticated""#), "{nameless}");
}

#[tokio::test]
async fn a_response_the_client_never_reads_does_not_hold_its_connection() {
    let pki = Pki::new();
    let limits = ServerLimits { idle_timeout: Duration::from_secs(1), ..ServerLimits::default() };
    let (addr, service) = start(&pki, limits).await;
    let mut stream = connect(addr, pki.client("slow-reader")).await;
    stream.write_all(b"GET /large HTTP/1.1\r\nhost: test\r\n\r\n").await.expect("request sent");
    wait_for("the connection is open", || service.open.load(Ordering::SeqCst) == 1).await;
    wait_for("the stuck connection is dropped", || service.open.load(Ordering::SeqCst) == 0).await;
    drop(stream);
}
