//! Mutual TLS against a real agent process, with clients nobody here wrote:
//! curl and openssl. Bad certificates are refused at the handshake, roles are
//! enforced in the envelope, and a failed handshake ends that connection only.

use std::time::Duration;

use upkeep_coordinator::client::{AgentClient, ClientSettings, tls_config};
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::curl::{curl, openssl_s_client};
use upkeep_tests::pki::Pki;

const HTTP_GET_HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: upkeep\r\nConnection: close\r\n\r\n";

#[test]
fn reader_gets_the_node_with_the_version_the_kubelet_prints() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let reply = curl(&pki, agent.addr, Some("reader"), "/v1/node", &[]);
    assert_eq!(reply.status, Some(200), "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let etag = reply.header("etag").expect("an ETag is sent");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let node = reply.json();
    assert_eq!(node["name"], "worker-1");
    assert_eq!(node["role"], "worker");
    assert_eq!(node["phase"], "Idle");
    assert_eq!(node["cordoned"], false);
    assert_eq!(node["components"][0]["name"], "kubelet");
    assert_eq!(node["components"][0]["observed_version"], "v1.30.2");
    assert_eq!(node["history"], serde_json::json!([]));
    assert!(node["host"]["cpus"].as_u64().is_some_and(|cpus| cpus >= 1));
    assert!(node["host"]["memory_total_bytes"].as_u64().is_some_and(|bytes| bytes > 0));
    let again = curl(&pki, agent.addr, Some("reader"), "/v1/node", &[]);
    assert_eq!(again.header("etag"), Some(etag), "an unchanged node keeps its ETag");
}

#[test]
fn a_client_offering_only_http_1_0_is_served() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    // curl --http1.0 offers `http/1.0` alone by ALPN; a server that knows only
    // `http/1.1` refuses the handshake with no_application_protocol.
    let reply = curl(&pki, agent.addr, Some("reader"), "/v1/node", &["--http1.0"]);
    assert_eq!(reply.status, Some(200), "{reply:?}");
    assert_eq!(reply.json()["name"], "worker-1");
    let missing = curl(&pki, agent.addr, Some("reader"), "/v1/nodes", &["--http1.0"]);
    assert_eq!(missing.status, Some(404), "{missing:?}");
    assert_eq!(missing.json()["error"]["code"], "not_found");
}

#[test]
fn reader_on_a_write_path_gets_403_in_the_envelope() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let body = r#"{"target_version": "v1.30.3", "artifacts": []}"#;
    let reply = curl(
        &pki,
        agent.addr,
        Some("reader"),
        "/v1/upgrades",
        &["-X", "POST", "-H", "content-type: application/json", "--data", body],
    );
    assert_eq!(reply.status, Some(403), "{reply:?}");
    let envelope = reply.json();
    assert_eq!(envelope["error"]["code"], "forbidden");
    assert!(envelope["error"]["message"].as_str().is_some_and(|m| m.contains("upkeep:operator")), "{envelope}");
    assert_eq!(envelope["error"]["details"], serde_json::json!([]));
    // The log is read from the agent's stderr by another thread: wait for the line.
    let audited = |log: &str| log.contains("mutating request") && log.contains("reader");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !audited(&agent.log()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let audit = agent.log();
    assert!(audited(&audit), "the refusal is audited: {audit}");
}

#[test]
fn a_certificate_without_a_role_may_only_ask_for_health() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let health = curl(&pki, agent.addr, Some("norole"), "/healthz", &[]);
    assert_eq!(health.status, Some(200), "{health:?}");
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    let node = curl(&pki, agent.addr, Some("norole"), "/v1/node", &[]);
    assert_eq!(node.status, Some(403), "{node:?}");
    assert_eq!(node.json()["error"]["code"], "forbidden");
}

#[test]
fn bad_client_certificates_are_refused_at_the_handshake() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    for client in [None, Some("foreign"), Some("expired")] {
        let reply = curl(&pki, agent.addr, client, "/healthz", &[]);
        assert_eq!(reply.status, None, "{client:?} must get no HTTP response: {reply:?}");
        assert_ne!(reply.exit_code, 0, "{client:?}: {reply:?}");
    }
    let admin = curl(&pki, agent.addr, Some("admin"), "/metrics", &[]);
    assert_eq!(admin.status, Some(200), "{admin:?}");
    for reason in ["no_client_certificate", "unknown_issuer", "certificate_expired"] {
        let line = format!("upkeep_agent_tls_handshake_failures_total{{reason=\"{reason}\"}}");
        assert!(admin.body.contains(&line), "metrics count {reason}: {}", admin.body);
    }
}

#[test]
fn plain_http_on_the_tls_port_gets_a_400_that_says_so() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let url = format!("http://{}/v1/node", agent.addr);
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--include", &url])
        .output()
        .expect("curl runs");
    let reply = String::from_utf8_lossy(&output.stdout);
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply} {}", String::from_utf8_lossy(&output.stderr));
    let body = reply.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    let envelope: serde_json::Value = serde_json::from_str(body).expect("the envelope");
    assert_eq!(envelope["error"]["code"], "malformed_request");
    assert!(envelope["error"]["message"].as_str().is_some_and(|m| m.contains("HTTPS")), "{envelope}");
    let metrics = curl(&pki, agent.addr, Some("admin"), "/metrics", &[]);
    let line = "upkeep_agent_tls_handshake_failures_total{reason=\"plain_http\"} 1";
    assert!(metrics.body.contains(line), "{}", metrics.body);
}

/// The coordinator's client for `agent` as the reader, with `settings`.
fn coordinators_client(pki: &Pki, settings: ClientSettings) -> AgentClient {
    let reader = pki.client("reader");
    let tls = tls_config(&pki.ca_cert(), &reader.cert, &reader.key).expect("client TLS");
    AgentClient::new(tls, settings)
}

/// Asserts the agent's count of full and resumed TLS handshakes (curl's own
/// read of the metrics is one more full handshake).
fn assert_handshakes(pki: &Pki, agent: &AgentProcess, full: u64, resumed: u64) {
    let metrics = curl(pki, agent.addr, Some("admin"), "/metrics", &[]);
    assert_eq!(metrics.status, Some(200), "{metrics:?}");
    for (kind, count) in [("full", full + 1), ("resumed", resumed)] {
        let line = format!("upkeep_agent_tls_handshakes_total{{kind=\"{kind}\"}} {count}\n");
        assert!(metrics.body.contains(&line), "{kind} handshakes: {}", metrics.body);
    }
}

/// The coordinator's client keeps each agent's newest session ticket: after
/// the first connection, every new one resumes instead of paying a full
/// handshake (the agent counts both kinds).
#[test]
fn the_coordinators_client_resumes_its_session_with_an_agent() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    // No idle connection is kept, so every call opens a new one.
    let client = coordinators_client(&pki, ClientSettings { idle_per_node: 0, ..ClientSettings::for_fleet(1) });
    let address = agent.addr.to_string();
    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        for _ in 0..3 {
            client.node(&address).await.expect("the agent answers");
        }
    });
    assert_handshakes(&pki, &agent, 1, 2);
}

/// A fleet-wide read closes its connection after the answer instead of
/// leaving it in the client's pool, though the pool would keep it: the next
/// call finds no connection to reuse and opens one, which resumes the session.
/// (A third call is not asserted: the pool may open a new connection rather
/// than wait for the one it is about to get back.)
#[test]
fn a_read_that_closes_leaves_no_connection_to_reuse() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nidle_timeout_secs = 600\n");
    let pooled = ClientSettings { pool_idle_timeout: Duration::from_secs(600), ..ClientSettings::for_fleet(1) };
    let client = coordinators_client(&pki, pooled);
    let address = agent.addr.to_string();
    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        client.node_then_close(&address).await.expect("the agent answers");
        client.node(&address).await.expect("the agent answers again");
    });
    assert_handshakes(&pki, &agent, 1, 1);
}

#[test]
fn openssl_without_a_certificate_gets_no_response() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let tls12 = openssl_s_client(&pki, agent.addr, None, &["-tls1_2"], HTTP_GET_HEALTHZ);
    assert_ne!(tls12.exit_code, 0, "TLS 1.2 handshake without a certificate fails: {}", tls12.output);
    assert!(!tls12.output.contains("HTTP/1.1 200"), "{}", tls12.output);
    let tls13 = openssl_s_client(&pki, agent.addr, None, &["-tls1_3", "-quiet"], HTTP_GET_HEALTHZ);
    assert!(!tls13.output.contains("HTTP/1.1 200"), "TLS 1.3 without a certificate is refused: {}", tls13.output);
    let foreign = openssl_s_client(&pki, agent.addr, Some("foreign"), &["-tls1_2"], HTTP_GET_HEALTHZ);
    assert!(!foreign.output.contains("HTTP/1.1 200"), "{}", foreign.output);
}

#[test]
fn openssl_with_a_certificate_speaks_tls_12_and_13_but_not_11() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    for (flag, protocol) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let reply = openssl_s_client(&pki, agent.addr, Some("reader"), &[flag, "-ign_eof"], HTTP_GET_HEALTHZ);
        assert!(reply.output.contains("HTTP/1.1 200"), "{flag}: {}", reply.output);
        assert!(reply.output.contains(protocol), "{flag}: {}", reply.output);
        assert!(
            reply.output.contains("Verify return code: 0 (ok)"),
            "the server certificate verifies: {}",
            reply.output
        );
    }
    let old = openssl_s_client(&pki, agent.addr, Some("reader"), &["-tls1_1"], HTTP_GET_HEALTHZ);
    assert!(!old.output.contains("HTTP/1.1 200"), "TLS 1.1 is refused: {}", old.output);
}

#[tokio::test]
async fn a_failed_handshake_ends_that_connection_only() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut kept = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("reader"))))
        .await
        .expect("reader connects");
    assert_eq!(kept.get("/v1/node").await.expect("first request").status, 200);
    let addr = agent.addr;
    let ca = pki.ca_cert();
    let refused = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg(format!("https://{addr}/healthz"))
            .status()
            .expect("curl runs")
    })
    .await
    .expect("curl finished");
    assert!(!refused.success());
    let after = kept.get("/v1/node").await.expect("the kept connection still serves");
    assert_eq!(after.status, 200);
}

/// Control characters a client could put in its certificate or request to forge
/// log lines or rewrite a terminal.
const FORGED: &str = "\n2026-01-01T00:00:00.000000Z  INFO audit: forged line \x1b[31mred\x1b[0m\r";

#[tokio::test]
async fn names_and_strings_from_clients_are_logged_escaped() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let named = pki.issue_client("forged-cn", &format!("evil{FORGED}"), Some("upkeep:operator"));
    let organized = pki.issue_client("forged-o", "o-forger", Some(&format!("upkeep:operator{FORGED}")));
    let mut by_name =
        ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&named))).await.expect("connects");
    let mut by_organization =
        ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&organized))).await.expect("connects");
    let source = serde_json::to_string(&format!("file:///srv/kubelet{FORGED}")).expect("JSON string");
    let upgrade = format!(
        r#"{{"target_version": "v1.30.3", "artifacts": [{{"component": "kubelet", "source": {source},
        "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}}]}}"#
    );
    let path = "/v1/nodes/%0A2026-01-01T00:00:00.000000Z%20%20INFO%20audit:%20forged%20line%1B%5B31m%0D";
    for client in [&mut by_name, &mut by_organization] {
        client.post_json("/v1/cordon", "{}").await.expect("reply");
        client.post_json("/v1/upgrades", &upgrade).await.expect("reply");
        client.get(path).await.expect("reply");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    // Both clients' two writes are audited last; wait until the log has them all.
    let complete = |log: &str| log.matches("client=evil").count() >= 2 && log.matches("client=o-forger").count() >= 2;
    while !complete(&agent.log()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = agent.log();
    assert!(complete(&log), "every write is audited: {log}");
    assert!(log.contains("evil\\n2026-01-01"), "the forged name is logged, escaped: {log}");
    assert!(!log.contains('\x1b') && !log.contains('\r'), "no terminal control characters: {log:?}");
    for line in log.lines() {
        assert!(
            !line.contains("forged line") || line.contains("\\n2026-01-01"),
            "a client started a log line of its own: {line:?}"
        );
    }
}

#[tokio::test]
async fn a_certificate_with_an_empty_common_name_is_refused() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let nameless = pki.issue_client("nameless", "", Some("upkeep:admin"));
    let mut client =
        ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&nameless))).await.expect("handshake");
    for reply in [
        client.get("/healthz").await.expect("reply"),
        client.get("/v1/node").await.expect("reply"),
        client.post_json("/v1/cordon", "{}").await.expect("reply"),
    ] {
        assert_eq!(reply.status, 401, "{}", String::from_utf8_lossy(&reply.body));
        let envelope = reply.json();
        assert_eq!(envelope["error"]["code"], "unauthenticated", "{envelope}");
        assert!(envelope["error"]["message"].as_str().is_some_and(|m| m.contains("empty Common Name")), "{envelope}");
    }
    let mut admin =
        ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("admin")))).await.expect("admin");
    let node = admin.get("/v1/node").await.expect("reply").json();
    assert_eq!(node["cordoned"], false, "the nameless admin cordoned nothing: {node}");
}
