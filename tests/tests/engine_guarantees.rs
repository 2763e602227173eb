//! What the engine guarantees whatever a request or a defect does: every number
//! a request carries is bounded (422 naming the field, never a panic); a step
//! that panics fails its operation (rolled back when at or after Swap) and the
//! node takes new work; a request token answers with its operation long after
//! that operation left the recent list, across a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use upkeep_agent::config::ComponentConfig;
use upkeep_agent::host::BoxFuture;
use upkeep_agent::host::services::{RestartError, RestartOutcome, ServiceManager};
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::in_process::InProcessAgent;
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{kubelet_artifact, setup, upgrade_body, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);

async fn client(pki: &Pki, addr: std::net::SocketAddr, role: &str) -> ApiClient {
    ApiClient::connect(addr, client_config(&pki.ca_cert(), Some(&pki.client(role)))).await.expect("connects")
}

/// Posts `body` to `path`, expects 202, and waits for the operation to end.
async fn run(client: &mut ApiClient, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let reply = client.post_json(path, &body.to_string()).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    wait_for_end(client, reply.json()["id"].as_str().expect("id"), WITHIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_past_their_bounds_are_422_naming_the_field_and_the_node_stays_usable() {
    let pki = Pki::new();
    let agent = AgentProcess::start_with(&pki, &setup("v1.30.2", start_health_server().await, ""));
    let mut admin = client(&pki, agent.addr, "admin").await;
    let artifacts = tempfile::tempdir().expect("tempdir");
    let artifact = kubelet_artifact(artifacts.path(), "v1.30.3", true);
    for (field, value) in [("timeout_seconds", u64::MAX), ("grace_period_seconds", 1 << 62), ("timeout_seconds", 0)] {
        let mut body = upgrade_body("v1.30.3", &artifact, None);
        body["drain"] = serde_json::json!({ field: value, "on_timeout": "force" });
        let reply = admin.post_json("/v1/upgrades", &body.to_string()).await.expect("reply");
        assert_eq!(reply.status, 422, "{field}={value}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["error"]["details"][0]["field"], format!("drain.{field}"));
        let drain = serde_json::json!({ "drain": { field: value } });
        let reply = admin.post_json("/v1/drain", &drain.to_string()).await.expect("reply");
        assert_eq!(reply.status, 422, "drain {field}={value}: {}", String::from_utf8_lossy(&reply.body));
    }
    let mut body = upgrade_body("v1.30.3", &artifact, None);
    body["drain"] = serde_json::json!({ "timeout_seconds": 86_400, "grace_period_seconds": 3_600 });
    let operation = run(&mut admin, "/v1/upgrades", &body).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
}

/// A service manager that panics on its first `panics` restarts, then restarts nothing.
struct PanickingServices {
    panics: usize,
    calls: AtomicUsize,
}

impl ServiceManager for PanickingServices {
    fn restart<'a>(
        &'a self,
        _component: &'a ComponentConfig,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<RestartOutcome, RestartError>> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.panics {
                panic!("scripted defect in the service manager");
            }
            Ok(RestartOutcome::NothingToRestart)
        })
    }
}

async fn agent_whose_restart_panics(pki: &Pki, panics: usize) -> (InProcessAgent, tempfile::TempDir) {
    let health = start_health_server().await;
    let setup = setup("v1.30.2", health, "");
    let agent = InProcessAgent::start_with_host(pki, "v1.30.2", &setup.component_extra, &setup.extra, |host| {
        host.services = Arc::new(PanickingServices { panics, calls: AtomicUsize::new(0) });
    })
    .await;
    (agent, tempfile::tempdir().expect("tempdir"))
}

async fn node_takes_new_work(client: &mut ApiClient) {
    let cordon = run(client, "/v1/cordon", &serde_json::json!({})).await;
    assert_eq!(cordon["phase"], "Succeeded", "the node takes new work after the defect: {cordon:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_panics_after_the_swap_rolls_back_and_the_node_takes_new_work() {
    let pki = Pki::new();
    let (agent, artifacts) = agent_whose_restart_panics(&pki, 1).await;
    let mut operator = client(&pki, agent.addr, "operator").await;
    let artifact = kubelet_artifact(artifacts.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["field"], "Restart");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "step_panicked");
    let node = operator.get("/v1/node").await.expect("reply").json();
    assert_eq!(node["phase"], "Degraded", "{node:#}");
    assert_eq!(node["components"][0]["observed_version"], "v1.30.2", "the old kubelet is back");
    assert!(node["current_operation"].is_null(), "{node:#}");
    node_takes_new_work(&mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_rollback_ends_the_operation_failed_and_the_node_takes_new_work() {
    let pki = Pki::new();
    let (agent, artifacts) = agent_whose_restart_panics(&pki, usize::MAX).await;
    let mut operator = client(&pki, agent.addr, "operator").await;
    let artifact = kubelet_artifact(artifacts.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "Failed", "{operation:#}");
    let codes: Vec<&str> = operation["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["details"][0]["code"].as_str())
        .collect();
    assert_eq!(codes, ["step_panicked", "runner_panicked"], "{operation:#}");
    let node = operator.get("/v1/node").await.expect("reply").json();
    assert_eq!(node["phase"], "Degraded", "{node:#}");
    let degraded = node["conditions"].as_array().expect("conditions").iter().find(|c| c["type"] == "Degraded");
    assert_eq!(degraded.expect("a Degraded condition")["reason"], "OperationDefect", "{node:#}");
    node_takes_new_work(&mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_names_its_operation_after_it_left_the_recent_list_and_across_a_restart() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut operator = client(&pki, agent.addr, "operator").await;
    let first = run(&mut operator, "/v1/cordon", &serde_json::json!({"request_token": "keep-me"})).await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    for index in 0..upkeep_agent::engine::KEPT_OPERATIONS {
        let kind = if index % 2 == 0 { "/v1/uncordon" } else { "/v1/cordon" };
        run(&mut operator, kind, &serde_json::json!({"request_token": format!("filler-{index}")})).await;
    }
    let recent = operator.get("/v1/operations").await.expect("reply").json();
    let listed = recent["operations"].as_array().expect("operations").iter().any(|op| op["id"] == first_id.as_str());
    assert!(!listed, "the first operation left the recent list");

    let agent = agent.restart(&[]);
    let mut operator = client(&pki, agent.addr, "operator").await;
    let replay = operator.post_json("/v1/cordon", r#"{"request_token": "keep-me"}"#).await.expect("reply");
    assert_eq!(replay.status, 202, "{}", String::from_utf8_lossy(&replay.body));
    assert_eq!(replay.json()["id"], first_id.as_str(), "the same token names the same operation");
    assert_eq!(replay.json()["phase"], "Succeeded");
    let other = operator.post_json("/v1/uncordon", r#"{"request_token": "keep-me"}"#).await.expect("reply");
    assert_eq!(other.status, 409, "the token came with another request: {}", String::from_utf8_lossy(&other.body));
}
