//! The agent process over its life: certificate rotation on SIGHUP and on file
//! change without dropping the listener, clean exit on SIGTERM, and the
//! connection limits (handshake, header, body and idle timeouts, connection cap).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use upkeep_common::Identity;
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config, connect_tls};
use upkeep_tests::pki::Pki;

/// A client's end of a TLS connection.
type ClientTls = TlsStream<TcpStream>;

/// Generous bound for things that should happen within a second or two.
const PATIENCE: Duration = Duration::from_secs(15);

async fn served_common_name(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let stream = connect_tls(addr, config).await.expect("handshake");
    let leaf =
        stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).expect("server certificate").clone();
    Identity::from_certificate_der(&leaf).expect("readable").common_name
}

async fn wait_for_common_name(addr: SocketAddr, config: Arc<ClientConfig>, expected: &str) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if served_common_name(addr, config.clone()).await == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Reads until the server closes the stream; `None` if it stays open past `within`.
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_to_the_next_connection() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    assert_eq!(served_common_name(agent.addr, config.clone()).await, "worker-1");
    let mut kept = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
    assert_eq!(kept.get("/healthz").await.expect("reply").status, 200);

    pki.issue_node("node", "worker-1-rotated");
    agent.signal(Signal::SIGHUP);
    assert!(wait_for_common_name(agent.addr, config.clone(), "worker-1-rotated").await, "log:\n{}", agent.log());
    assert_eq!(kept.get("/v1/node").await.expect("the old connection still serves").status, 200);
    assert!(agent.log().contains("reloaded"));
}

#[tokio::test]
async fn a_broken_certificate_on_reload_keeps_the_old_one() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    std::fs::write(pki.file("node.crt"), "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        .expect("write broken certificate");
    agent.signal(Signal::SIGHUP);
    let deadline = Instant::now() + PATIENCE;
    while !agent.log().contains("TLS reload failed") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(agent.log().contains("TLS reload failed"), "log:\n{}", agent.log());
    assert_eq!(served_common_name(agent.addr, config).await, "worker-1");
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let pki = Pki::new();
    let agent = AgentProcess::start_with_tls_reload(&pki, "v1.30.2", 1);
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    assert_eq!(served_common_name(agent.addr, config.clone()).await, "worker-1");
    // Modification times have a resolution of a few milliseconds at worst; step past it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    pki.issue_node("node", "worker-1-by-file");
    assert!(wait_for_common_name(agent.addr, config, "worker-1-by-file").await, "log:\n{}", agent.log());
}

#[tokio::test]
async fn sigterm_exits_cleanly_with_a_connection_open() {
    let pki = Pki::new();
    let mut agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut kept = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("reader"))))
        .await
        .expect("connects");
    assert_eq!(kept.get("/healthz").await.expect("reply").status, 200);
    agent.signal(Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let status = agent.wait_exit(PATIENCE);
        (status, agent.log())
    })
    .await
    .expect("waited");
    let (status, log) = status;
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}; log:\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nhandshake_timeout_secs = 1\n");
    let mut tcp = TcpStream::connect(agent.addr).await.expect("tcp connects");
    assert!(closed_within(&mut tcp, PATIENCE).await.is_some(), "a client that never says hello is dropped");
}

#[tokio::test]
async fn a_slow_header_is_dropped_at_the_header_timeout() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nheader_read_timeout_secs = 1\n");
    let mut stream =
        connect_tls(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("reader")))).await.expect("handshake");
    stream.write_all(b"GET /v1/node HTTP/1.1\r\nHost: upkeep\r\n").await.expect("partial header sent");
    assert!(closed_within(&mut stream, PATIENCE).await.is_some(), "an unfinished header is not waited for forever");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let pki = Pki::new();
    let agent =
        AgentProcess::start(&pki, "v1.30.2", "[server]\nidle_timeout_secs = 1\nheader_read_timeout_secs = 30\n");
    let mut stream =
        connect_tls(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("reader")))).await.expect("handshake");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: upkeep\r\n\r\n").await.expect("request sent");
    let mut first = [0u8; 64];
    let read = stream.read(&mut first).await.expect("response");
    assert!(first[..read].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..read]));
    let closed = closed_within(&mut stream, PATIENCE).await;
    assert!(closed.is_some_and(|after| after < Duration::from_secs(10)), "closed after {closed:?}");
}

/// How many connections wait in the kernel's accept queue of the IPv4 socket
/// listening on `port` (the `rx_queue` of a LISTEN row in /proc/net/tcp).
fn accept_queue(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
        if local_port != port || *fields.get(3)? != "0A" {
            return None;
        }
        u32::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

/// The agent's `open_connections` gauge, read over `client`.
async fn open_connections(client: &mut ApiClient) -> u64 {
    let page = client.get("/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&page.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("upkeep_agent_open_connections "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no open_connections gauge in {text}"))
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nmax_connections = 1\n");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let mut first = ApiClient::connect(agent.addr, config.clone()).await.expect("first connects");
    assert_eq!(open_connections(&mut first).await, 1);
    let addr = agent.addr;
    let second = tokio::spawn(async move {
        let mut client = ApiClient::connect(addr, config).await.expect("second connects");
        client.get("/healthz").await.expect("reply").status
    });
    let deadline = Instant::now() + PATIENCE;
    while accept_queue(addr.port()) != Some(1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accept_queue(addr.port()), Some(1), "the second connection waits in the backlog, not accepted");
    assert_eq!(open_connections(&mut first).await, 1, "the agent serves one connection while the cap is reached");
    assert_eq!(accept_queue(addr.port()), Some(1), "still waiting after a round trip through the agent");
    assert!(!second.is_finished(), "the second connection is not served while the cap is reached");
    drop(first);
    let status = tokio::time::timeout(PATIENCE, second).await.expect("served once a slot frees").expect("task");
    assert_eq!(status, 200);
    assert_eq!(accept_queue(addr.port()), Some(0));
}

/// Sends a write request's headers and the start of its body, then nothing more.
async fn stall_body(addr: SocketAddr, config: Arc<ClientConfig>, framing: &str, partial: &str) -> ClientTls {
    let mut stream = connect_tls(addr, config).await.expect("handshake");
    let head =
        format!("POST /v1/cordon HTTP/1.1\r\nHost: upkeep\r\nContent-Type: application/json\r\n{framing}\r\n{partial}");
    stream.write_all(head.as_bytes()).await.expect("headers and part of the body sent");
    stream.flush().await.expect("flushed");
    stream
}

/// What the server sent before it closed `stream`; `None` if it stays open past `within`.
async fn answer_before_close(stream: &mut ClientTls, within: Duration) -> Option<String> {
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(read)) => answer.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test]
async fn stalled_bodies_are_cut_off_and_free_their_slots() {
    let pki = Pki::new();
    let agent = AgentProcess::start(
        &pki,
        "v1.30.2",
        "[server]\nmax_connections = 2\nbody_read_timeout_secs = 1\nidle_timeout_secs = 600\n",
    );
    let config = client_config(&pki.ca_cert(), Some(&pki.client("operator")));
    let mut with_length = stall_body(agent.addr, config.clone(), "Content-Length: 100\r\n", "{\"request_").await;
    let mut chunked = stall_body(agent.addr, config.clone(), "Transfer-Encoding: chunked\r\n", "5\r\n{\"req\r\n").await;
    let addr = agent.addr;
    let waiting = tokio::spawn(async move {
        let mut client = ApiClient::connect(addr, config).await.expect("connects once a slot frees");
        client.get("/healthz").await.expect("reply").status
    });
    for (framing, stream) in [("Content-Length", &mut with_length), ("chunked", &mut chunked)] {
        let answer = answer_before_close(stream, PATIENCE).await;
        let answer = answer.unwrap_or_else(|| panic!("a stalled {framing} body is cut off; log:\n{}", agent.log()));
        assert!(answer.starts_with("HTTP/1.1 408"), "{framing}: {answer}");
        assert!(answer.contains("\"request_timeout\"") && answer.contains("did not arrive within"), "{answer}");
    }
    let status = tokio::time::timeout(PATIENCE, waiting).await.expect("the waiting client is served").expect("task");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_at_the_idle_timeout() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nbody_read_timeout_secs = 600\nidle_timeout_secs = 1\n");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("operator")));
    for (framing, partial) in
        [("Content-Length: 100\r\n", "{\"request_"), ("Transfer-Encoding: chunked\r\n", "5\r\n{\"req\r\n")]
    {
        let mut stream = stall_body(agent.addr, config.clone(), framing, partial).await;
        let answer = answer_before_close(&mut stream, PATIENCE).await.expect("a stalled body is cut off");
        assert!(answer.starts_with("HTTP/1.1 408"), "{framing}: {answer}");
        assert!(answer.contains("\"request_timeout\"") && answer.contains("stalled"), "{answer}");
    }
}
