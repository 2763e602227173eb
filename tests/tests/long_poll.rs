//! The long poll of `GET /v1/operations/{id}?wait=SECONDS&after=PHASE` on a
//! real agent process: the answer comes when the operation ends, not before;
//! an idle timeout shorter than the wait does not cut it and the connection
//! stays usable; the agent's shutdown ends a wait; a bad query is a 422
//! naming the key. An upgrade posted with `Prefer: wait` (here by curl) is
//! answered once it has ended; with every waiting place taken it is answered
//! at once, without claiming the wait.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use nix::sys::signal::Signal;
use upkeep_agent::server::wait::MAX_WAITING;
use upkeep_tests::client::request;
use upkeep_tests::curl::curl;
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::upgrades::{UpgradeNode, slow_setup, upgrade_body};

/// An agent whose kubelet restart takes `seconds`, with `extra` TOML.
async fn slow_agent(seconds: u32, extra: &str) -> UpgradeNode {
    let port = start_health_server().await;
    UpgradeNode::start_with(&slow_setup("v1.30.2", port, &seconds.to_string(), extra))
}

/// Starts an upgrade to v1.30.3 and returns its operation id.
async fn start_upgrade(node: &UpgradeNode) -> String {
    let mut client = node.client("operator").await;
    let body = upgrade_body("v1.30.3", &node.artifact("v1.30.3", true), None).to_string();
    let reply = client.post_json("/v1/upgrades", &body).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", reply.json());
    reply.json()["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_answers_when_the_operation_ends_even_past_the_idle_timeout() {
    let node = slow_agent(3, "[server]\nidle_timeout_secs = 1\n").await;
    let id = start_upgrade(&node).await;
    let mut reader = node.client("reader").await;
    let asked = Instant::now();
    let reply = reader.get(&format!("/v1/operations/{id}?wait=30&after=Running")).await.expect("a reply");
    let waited = asked.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["phase"], "Succeeded", "the answer came when the operation ended: {}", reply.json());
    assert!(waited >= Duration::from_secs(1), "the restart alone takes 3 s, yet the answer came after {waited:?}");
    let again = reader.get(&format!("/v1/operations/{id}?wait=30")).await.expect("the same connection still works");
    assert_eq!(again.json()["phase"], "Succeeded", "an ended operation is answered at once");
    let metrics = reader.get("/metrics").await.expect("metrics").body;
    let text = String::from_utf8_lossy(&metrics);
    let gets = text
        .lines()
        .filter(|line| line.starts_with("upkeep_agent_http_requests_total{route=\"/v1/operations/{id}\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(gets, 2, "one request waited for the whole upgrade:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_posted_preferring_to_wait_is_answered_once_it_has_ended() {
    let node = slow_agent(3, "[server]\nidle_timeout_secs = 1\n").await;
    let body = upgrade_body("v1.30.3", &node.artifact("v1.30.3", true), None).to_string();
    let args = ["-X", "POST", "-H", "Content-Type: application/json", "-H", "Prefer: wait=15", "--data", &body];
    let reply =
        tokio::task::block_in_place(|| curl(&node.pki, node.agent.addr, Some("operator"), "/v1/upgrades", &args));
    assert_eq!(reply.status, Some(202), "{reply:?}");
    assert_eq!(
        reply.json()["phase"],
        "Succeeded",
        "answered once the upgrade ended (its restart takes 3 s, past the 1 s idle timeout): {reply:?}"
    );
    assert_eq!(reply.header("preference-applied"), Some("wait=15"));
    let mut reader = node.client("reader").await;
    let page = String::from_utf8_lossy(&reader.get("/metrics").await.expect("metrics").body).into_owned();
    assert!(page.contains("upkeep_agent_http_requests_total{route=\"/v1/upgrades\",status=\"202\"} 1"), "{page}");
    assert!(!page.contains("route=\"/v1/operations/{id}\""), "nothing asked about the operation: {page}");
}

/// Waits until the agent reports `count` requests waiting.
async fn until_waiting(node: &UpgradeNode, count: usize) {
    let mut watcher = node.client("reader").await;
    let wanted = format!("upkeep_agent_waiting_requests {count}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = watcher.get("/metrics").await.expect("metrics").body;
        if String::from_utf8_lossy(&page).lines().any(|line| line == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {wanted}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_waiting_place_taken_a_preferred_wait_is_answered_at_once_and_not_claimed() {
    let node = slow_agent(30, "").await;
    let body = upgrade_body("v1.30.3", &node.artifact("v1.30.3", true), Some("tok-full")).to_string();
    let mut operator = node.client("operator").await;
    let accepted = operator.post_json("/v1/upgrades", &body).await.expect("reply");
    assert_eq!(accepted.status, 202, "{}", accepted.json());
    let id = accepted.json()["id"].as_str().expect("an id").to_owned();
    let mut waits = Vec::new();
    for _ in 0..MAX_WAITING {
        let mut reader = node.client("reader").await;
        let path = format!("/v1/operations/{id}?wait=30&after=Running");
        waits.push(tokio::spawn(async move { reader.get(&path).await.map(|reply| reply.status) }));
    }
    until_waiting(&node, MAX_WAITING).await;
    let headers = [("content-type", "application/json"), ("prefer", "wait=20")];
    let asked = Instant::now();
    let reply = operator.send(request(Method::POST, "/v1/upgrades", &headers, Bytes::from(body))).await;
    let reply = reply.expect("reply");
    assert_eq!(reply.status, 202, "{}", reply.json());
    assert_eq!(reply.json()["id"], id.as_str(), "the token names the running operation");
    assert_eq!(reply.json()["phase"], "Running", "answered at once: {}", reply.json());
    assert!(asked.elapsed() < Duration::from_secs(20), "not held for the preferred wait");
    assert_eq!(reply.header("preference-applied"), None, "a wait not applied is not claimed");
    for wait in waits {
        wait.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_shutdown_ends_a_wait() {
    let mut node = slow_agent(20, "").await;
    let id = start_upgrade(&node).await;
    let mut reader = node.client("reader").await;
    let wait = tokio::spawn(async move { reader.get(&format!("/v1/operations/{id}?wait=30&after=Running")).await });
    let mut watcher = node.client("reader").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = watcher.get("/metrics").await.expect("metrics").body;
        if String::from_utf8_lossy(&page).lines().any(|line| line == "upkeep_agent_waiting_requests 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the request never started waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.agent.signal(Signal::SIGTERM);
    let reply = tokio::time::timeout(Duration::from_secs(25), wait)
        .await
        .expect("the wait ended before its 30 s")
        .expect("the task")
        .expect("a reply");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["phase"], "Running", "answered as it was when the agent stopped: {}", reply.json());
    assert!(node.agent.wait_exit(Duration::from_secs(40)).is_some(), "the agent exits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_is_a_422_naming_the_key() {
    let node = slow_agent(0, "").await;
    let id = start_upgrade(&node).await;
    let mut reader = node.client("reader").await;
    for (query, key) in [
        ("wait=31", "wait"),
        ("wait=-1", "wait"),
        ("wait=1&after=Succeeded", "after"),
        ("wait=1&wait=2", "wait"),
        ("wait=1&pretty=true", "pretty"),
    ] {
        let reply = reader.get(&format!("/v1/operations/{id}?{query}")).await.expect("a reply");
        assert_eq!(reply.status, 422, "{query}: {}", reply.json());
        assert_eq!(reply.json()["error"]["code"], "validation_failed", "{query}");
        assert_eq!(reply.json()["error"]["details"][0]["field"], key, "{query}: {}", reply.json());
    }
    let at_once = reader.get(&format!("/v1/operations/{id}?after=Running")).await.expect("a reply");
    assert_eq!(at_once.status, 200, "an after without a wait is answered at once: {}", at_once.json());
    let missing = reader.get("/v1/operations/op-unknown?wait=5").await.expect("a reply");
    assert_eq!(missing.status, 404, "{}", missing.json());
}
