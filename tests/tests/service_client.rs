//! The coordinator service's client against a scripted service over real
//! mutual TLS: the event stream followed across a connection dropped in the
//! middle of a line, without losing or repeating an event; the service's
//! error envelope, a bad answer and an untrusted certificate as typed errors.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use upkeep_coordinator::client::{CertificateProblem, ClientError, tls_config};
use upkeep_coordinator::plan::Limits;
use upkeep_coordinator::service::model::{RoleCounters, Update, UpdateStatus, UpdateType};
use upkeep_coordinator::service_client::{ServiceClient, ServiceSettings, UpgradeRequest};
use upkeep_net::tls::{read_certificates, read_private_key, server_config};
use upkeep_tests::pki::Pki;

const EVENTS: &str = "/v1/clusters/prod/updates/u-1/events";

/// Event `seq` as the service writes it; the last one says the update succeeded.
fn event_line(seq: u64) -> String {
    let at = "2026-11-30T08:00:00Z";
    if seq == 5 {
        return format!(r#"{{"seq":5,"at":"{at}","event":"status","status":"Successful"}}"#) + "\n";
    }
    format!(r#"{{"seq":{seq},"at":"{at}","event":"node_started","node":"worker-{seq}"}}"#) + "\n"
}

fn ended_update() -> Update {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).single().expect("valid time");
    Update {
        id: "u-1".into(),
        cluster: "prod".into(),
        kind: UpdateType::VersionUpdate,
        params: vec![],
        target_version: "v1.31.2".parse().expect("version"),
        status: UpdateStatus::Successful,
        created_at: at,
        ended_at: Some(at),
        requested_by: "operator".into(),
        request_token: None,
        force: false,
        accepted_risks: vec![],
        limits: Limits { max_unavailable: 1, max_failures: 0, per_zone: None, soak_ms: 0 },
        prestage: false,
        node_timeout_secs: 600,
        errors: vec![],
        tasks: Update::fresh_tasks(),
        waiting: None,
        counters: RoleCounters::default(),
    }
}

/// One answer of the scripted service, written by hand so that a broken
/// stream breaks exactly where the script says.
enum Reply {
    /// A whole JSON body.
    Whole(u16, String),
    /// A chunked body, one chunk per string, each flushed; then its end, or a
    /// closed connection without the last chunk.
    Chunks(Vec<String>, bool),
}

/// The scripted service's answer to `method target`.
fn answer(method: &str, target: &str) -> Reply {
    let from = |n: u64| format!("{EVENTS}?from={n}");
    match (method, target) {
        ("GET", path) if path == from(1) => {
            // Three events, then half of the fourth, then the connection breaks.
            let partial = event_line(4)[..20].to_owned();
            Reply::Chunks(vec![event_line(1) + &event_line(2), event_line(3), partial], true)
        }
        ("GET", path) if path == from(4) => {
            // A keep-alive, the third event again, the fourth cut in two chunks, the last.
            let fourth = event_line(4);
            let (head, tail) = fourth.split_at(7);
            Reply::Chunks(vec!["\n".into(), event_line(3), head.into(), tail.into(), "\n".into(), event_line(5)], false)
        }
        ("GET", "/v1/clusters/prod/updates/u-1") => {
            Reply::Whole(200, serde_json::to_string(&ended_update()).expect("serializes"))
        }
        ("POST", "/v1/clusters/prod/upgrade") => Reply::Whole(
            409,
            r#"{"error":{"code":"update_in_progress","message":"update u-1 is running on prod",
                "details":[{"field":"","code":"running_update","message":"u-1"}]}}"#
                .into(),
        ),
        ("GET", "/v1/clusters/prod/updates") => Reply::Whole(200, "<html>not JSON</html>".into()),
        ("GET", "/readyz") => Reply::Whole(503, r#"{"ready":false,"leader":false,"replica":"replica-b"}"#.into()),
        ("GET", "/metrics") => Reply::Whole(
            503,
            r#"{"error":{"code":"dependency_unavailable","message":"store closed","details":[]}}"#.into(),
        ),
        _ => Reply::Whole(404, r#"{"error":{"code":"not_found","message":"no such route","details":[]}}"#.into()),
    }
}

/// Reads one request (head and declared body) and answers it; the connection closes after.
async fn serve_one(mut tls: impl AsyncRead + AsyncWrite + Unpin, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = tls.read(&mut buffer).await?;
        if read == 0 || received.len() > 64 * 1024 {
            return Ok(());
        }
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while received.len() < head_end + 4 + length {
        let read = tls.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        received.extend_from_slice(&buffer[..read]);
    }
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    seen.lock().unwrap_or_else(PoisonError::into_inner).push(target.to_owned());
    match answer(method, target) {
        Reply::Whole(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await?;
            tls.write_all(body.as_bytes()).await?;
        }
        Reply::Chunks(chunks, then_break) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            tls.write_all(head.as_bytes()).await?;
            for chunk in chunks {
                tls.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await?;
                tls.flush().await?;
            }
            if !then_break {
                tls.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    tls.flush().await?;
    tls.shutdown().await
}

/// A scripted service on a loopback port; stops when dropped.
struct ScriptedService {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl ScriptedService {
    async fn start(pki: &Pki) -> ScriptedService {
        let tls = server_config(
            read_certificates(&pki.ca_cert(), "CA").expect("CA"),
            read_certificates(&pki.file("node.crt"), "certificate").expect("certificate"),
            read_private_key(&pki.file("node.key")).expect("key"),
        )
        .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = seen.clone();
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), shared.clone());
                connections.spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = serve_one(tls, &seen).await;
                    }
                });
            }
        });
        ScriptedService { addr, seen, accept }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for ScriptedService {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn settings() -> ServiceSettings {
    ServiceSettings {
        timeout: Duration::from_secs(20),
        backoff: Duration::from_millis(10),
        stream_idle: Duration::from_secs(20),
        ..ServiceSettings::default()
    }
}

fn client(pki: &Pki, trusted_ca: &Pki, service: &ScriptedService) -> ServiceClient {
    let files = pki.client("operator");
    let tls = tls_config(&trusted_ca.ca_cert(), &files.cert, &files.key).expect("client TLS");
    ServiceClient::new(&format!("https://127.0.0.1:{}", service.addr.port()), tls, settings()).expect("client")
}

#[tokio::test]
async fn the_event_stream_resumes_after_the_last_event_seen_without_loss_or_repeat() {
    let pki = Pki::new();
    let service = ScriptedService::start(&pki).await;
    let client = client(&pki, &pki, &service);
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        client.follow_events("prod", "u-1", 1, |event| seen.push(event.seq)),
    )
    .await
    .expect("followed within a minute")
    .expect("followed to the end");
    assert_eq!(seen, [1, 2, 3, 4, 5], "every event once, in order");
    assert_eq!(ended.status, UpdateStatus::Successful);
    let streams: Vec<String> = service.seen().into_iter().filter(|target| target.starts_with(EVENTS)).collect();
    assert_eq!(streams, [format!("{EVENTS}?from=1"), format!("{EVENTS}?from=4")], "reopened after event 3");
}

#[tokio::test]
async fn the_service_errors_arrive_typed() {
    let pki = Pki::new();
    let service = ScriptedService::start(&pki).await;
    let client = client(&pki, &pki, &service);
    let refused = client.upgrade("prod", &UpgradeRequest::to("1.31"), None).await.expect_err("409");
    match refused {
        ClientError::Api { status: 409, code, message, details, .. } => {
            assert_eq!(code, "update_in_progress");
            assert!(message.contains("u-1"), "{message}");
            assert_eq!(details[0].message, "u-1");
        }
        other => panic!("not the service's envelope: {other:?}"),
    }
    let unreadable = client.updates("prod").await.expect_err("not JSON");
    assert!(matches!(unreadable, ClientError::Decode { status: 200, .. }), "{unreadable:?}");
    let missing = client.update("prod", "u-9").await.expect_err("404");
    assert!(matches!(&missing, ClientError::Api { status: 404, code, .. } if code == "not_found"), "{missing:?}");
    let not_a_path = client.update("prod", "../../healthz").await.expect_err("refused before sending");
    assert_eq!(not_a_path.report_code(), "invalid_request");
    assert!(!service.seen().iter().any(|target| target.contains("..")), "nothing sent for a bad id");
}

#[tokio::test]
async fn a_service_certificate_from_another_ca_is_a_certificate_error() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let service = ScriptedService::start(&pki).await;
    let client = client(&pki, &stranger, &service);
    let error = client.nodes("prod").await.expect_err("untrusted");
    assert!(matches!(error, ClientError::Certificate { problem: CertificateProblem::Untrusted, .. }), "{error:?}");
    assert!(!error.is_transient(), "trying again does not help");
}

#[tokio::test]
async fn a_replica_that_is_not_ready_still_says_who_it_is() {
    let pki = Pki::new();
    let service = ScriptedService::start(&pki).await;
    let client = client(&pki, &pki, &service);
    let readiness = client.readyz().await.expect("a 503 with the readiness body is an answer");
    assert!(!readiness.ready && !readiness.leader);
    assert_eq!(readiness.replica, "replica-b");
    let error = client.metrics().await.expect_err("a 503 envelope elsewhere is an error");
    assert!(
        matches!(&error, ClientError::Api { status: 503, code, .. } if code == "dependency_unavailable"),
        "{error:?}"
    );
}
