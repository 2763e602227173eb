//! Tests of the artifact reader against a scripted HTTPS server: reachability
//! by HEAD or a ranged GET, bounded in time, and a fetch whose server stalls
//! after the headers releases its connection when it is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::*;

/// What the scripted server does with one request.
#[derive(Clone, Copy)]
enum Script {
    /// Answers every request with this status line and an empty body.
    Status(&'static str),
    /// Refuses HEAD with 405, answers a ranged GET with 206.
    NoHead,
    /// Sends headers promising a body, a little of it, then nothing more.
    StallAfterHeaders,
    /// Reads the request and never answers.
    Silent,
}

struct Server {
    url: String,
    ca_file: tempfile::NamedTempFile,
    /// Each request's first line, and a message whenever the client closed a connection.
    events: mpsc::UnboundedReceiver<String>,
}

async fn server(script: Script) -> Server {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), &cert_pem).expect("write CA");
    let chain = upkeep_net::tls::parse_certificates(cert_pem.as_bytes(), "certificate").expect("certificate");
    let key = upkeep_net::tls::parse_private_key(certified.signing_key.serialize_pem().as_bytes()).expect("key");
    let config = upkeep_net::tls::server_config_without_client_auth(chain, key).expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (events_tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, events) = (acceptor.clone(), events_tx.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else { return };
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => {
                            let _ = events.send("closed".to_owned());
                            return;
                        }
                        Ok(read) => seen.extend_from_slice(&buffer[..read]),
                    }
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                    seen.drain(..end + 4);
                    let _ = events.send(head.lines().next().unwrap_or_default().to_owned());
                    let answer = match script {
                        Script::Status(status) => format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n"),
                        Script::NoHead if head.starts_with("HEAD") => {
                            "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".to_owned()
                        }
                        Script::NoHead if head.to_ascii_lowercase().contains("range: bytes=0-0") => {
                            "HTTP/1.1 206 Partial Content\r\ncontent-length: 1\r\ncontent-range: bytes 0-0/100\r\n\r\nx"
                                .to_owned()
                        }
                        Script::NoHead => "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_owned(),
                        Script::StallAfterHeaders => "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc".to_owned(),
                        Script::Silent => continue,
                    };
                    if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server { url: format!("https://localhost:{port}/kubelet"), ca_file, events }
}

impl Server {
    fn reader(&self) -> ArtifactReader {
        ArtifactReader::new(Some(self.ca_file.path())).expect("reader")
    }

    /// The next event, waiting at most ten seconds.
    async fn next_event(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv()).await.ok().flatten()
    }
}

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_source_that_answers_head_is_reachable() {
    let mut server = server(Script::Status("200 OK")).await;
    server.reader().probe(&server.url, WITHIN).await.expect("reachable");
    assert_eq!(server.next_event().await.as_deref(), Some("HEAD /kubelet HTTP/1.1"));
}

#[tokio::test]
async fn a_missing_source_is_unreachable() {
    let server = server(Script::Status("404 Not Found")).await;
    let refused = server.reader().probe(&server.url, WITHIN).await;
    assert!(matches!(&refused, Err(FileError::Fetch { reason, .. }) if reason.contains("404")), "{refused:?}");
}

#[tokio::test]
async fn a_server_refusing_head_is_asked_for_the_first_byte() {
    let mut server = server(Script::NoHead).await;
    server.reader().probe(&server.url, WITHIN).await.expect("reachable by a ranged GET");
    assert_eq!(server.next_event().await.as_deref(), Some("HEAD /kubelet HTTP/1.1"));
    let mut requests = Vec::new();
    while let Some(event) = server.next_event().await {
        if event != "closed" {
            requests.push(event);
            break;
        }
    }
    assert_eq!(requests, ["GET /kubelet HTTP/1.1"]);
}

#[tokio::test]
async fn a_silent_server_is_unreachable_within_the_bound() {
    let server = server(Script::Silent).await;
    let refused = server.reader().probe(&server.url, Duration::from_millis(300)).await;
    assert!(matches!(&refused, Err(FileError::Fetch { reason, .. }) if reason.contains("no answer")), "{refused:?}");
}

#[tokio::test]
async fn a_dropped_fetch_from_a_stalled_server_closes_its_connection() {
    let mut server = server(Script::StallAfterHeaders).await;
    let reader = server.reader();
    let mut sink = Vec::new();
    let copy = reader.copy_to(&server.url, &mut sink, 1 << 20);
    let outcome = tokio::time::timeout(Duration::from_millis(300), copy).await;
    assert!(outcome.is_err(), "the body never completes, so the copy is still waiting: {outcome:?}");
    assert_eq!(server.next_event().await.as_deref(), Some("GET /kubelet HTTP/1.1"));
    assert_eq!(server.next_event().await.as_deref(), Some("closed"), "the connection was released");
}

#[tokio::test]
async fn a_dropped_fetch_waiting_for_headers_closes_its_connection() {
    let mut server = server(Script::Silent).await;
    let reader = server.reader();
    let mut sink = Vec::new();
    let copy = reader.copy_to(&server.url, &mut sink, 1 << 20);
    let outcome = tokio::time::timeout(Duration::from_millis(300), copy).await;
    assert!(outcome.is_err(), "the server never answers, so the copy is still waiting: {outcome:?}");
    assert_eq!(server.next_event().await.as_deref(), Some("GET /kubelet HTTP/1.1"));
    assert_eq!(server.next_event().await.as_deref(), Some("closed"), "the connection was released");
}
