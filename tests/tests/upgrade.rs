//! Upgrades through the HTTP API of a real agent process with a fake kubelet:
//! the happy path, idempotency, refusals, verification failures, automatic
//! rollback, cancel, rollback on request, and dry run.

use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use hyper::Method;
use upkeep_tests::client::{ApiClient, Reply, request};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::upgrades::{
    Artifact, UpgradeNode as Node, component_artifact, setup, slow_setup, step_statuses, upgrade_body, wait_for_end,
    wait_for_step,
};

const WITHIN: Duration = Duration::from_secs(60);

async fn post(client: &mut ApiClient, path: &str, body: &serde_json::Value) -> Reply {
    client.post_json(path, &body.to_string()).await.expect("reply")
}

async fn node_state(client: &mut ApiClient) -> serde_json::Value {
    client.get("/v1/node").await.expect("reply").json()
}

fn condition<'a>(node: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    node["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).expect("condition present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_the_kubelet_to_the_next_patch() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let artifact = node.artifact("v1.30.3", true);
    let before = node_state(&mut operator).await;
    assert_eq!(before["components"][0]["observed_version"], "v1.30.2");

    let accepted =
        post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, Some("rollout-1:worker-1"))).await;
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let id = accepted.json()["id"].as_str().expect("id").to_owned();
    let operation = wait_for_end(&mut operator, &id, WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    assert_eq!(
        step_statuses(&operation),
        [
            "PreCheck:Success",
            "Stage:Success",
            "Cordon:Skipped",
            "Drain:Skipped",
            "Swap:Success",
            "Restart:Success",
            "PostCheck:Success",
            "Uncordon:Skipped"
        ]
    );
    assert_eq!(node.installed(), artifact.bytes, "the installed binary is the artifact, byte for byte");
    assert_eq!(node.restarts(), 1);

    let after = node_state(&mut operator).await;
    assert_eq!(after["components"][0]["observed_version"], "v1.30.3");
    assert_eq!(after["phase"], "Idle");
    let history = after["history"].as_array().expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["state"], "Completed");
    assert_eq!(history[0]["version"], "v1.30.3");
    assert_eq!(history[0]["from_version"], "v1.30.2");
    assert_eq!(history[0]["verified"], false, "a sha256 alone is not a verified signature");
    assert_ne!(before["components"][0]["observed_version"], after["components"][0]["observed_version"]);

    let again =
        post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, Some("rollout-1:worker-1"))).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], id.as_str(), "the same token names the same operation");
    let reused =
        post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.4", &artifact, Some("rollout-1:worker-1"))).await;
    assert_eq!(reused.status, 409, "a token reused for another request is refused");
    assert_eq!(node.restarts(), 1, "no second upgrade");

    let list = operator.get("/v1/operations").await.expect("reply").json();
    assert_eq!(list["operations"][0]["id"], id.as_str());
    let metrics = operator.get("/metrics").await.expect("reply");
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(page.contains("upkeep_agent_operations_total{kind=\"upgrade\",outcome=\"Succeeded\"} 1"), "{page}");
    assert!(page.contains("upkeep_agent_step_duration_seconds_count{step=\"Swap\"} 1"), "{page}");
    // One write when accepted, one as PreCheck starts, one as each of the eight
    // steps ends (marking the next one Running in the same write), one at the end.
    assert!(page.contains("upkeep_agent_state_writes_total{record=\"operation\"} 11"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_is_a_no_op_reported_as_skipped() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let artifact = node.artifact("v1.30.2", true);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.2", &artifact, None)).await;
    assert_eq!(reply.status, 202);
    let operation = reply.json();
    assert_eq!(operation["phase"], "Succeeded");
    assert_eq!(operation["no_op"], true);
    assert!(step_statuses(&operation).iter().all(|s| s.ends_with(":Skipped")), "{operation:#}");
    assert_eq!(node.restarts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_rules_refuse_skips_and_skew_unless_an_admin_forces() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let skip = node.artifact("v1.32.0", true);
    let refused = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.32.0", &skip, None)).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["error"]["code"], "version_refused");
    assert_eq!(refused.json()["error"]["details"][0]["code"], "skips_minor");

    let minor = node.artifact("v1.31.0", true);
    let mut skewed = upgrade_body("v1.31.0", &minor, None);
    skewed["control_plane_version"] = "v1.30.9".into();
    let refused = post(&mut operator, "/v1/upgrades", &skewed).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json()["error"]["details"][0]["code"], "skew");

    let mut forced = upgrade_body("v1.32.0", &skip, None);
    forced["force"] = true.into();
    assert_eq!(post(&mut operator, "/v1/upgrades", &forced).await.status, 403, "force needs an admin");
    let mut admin = node.client("admin").await;
    let accepted = post(&mut admin, "/v1/upgrades", &forced).await;
    assert_eq!(accepted.status, 202);
    let operation = wait_for_end(&mut admin, accepted.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded");
    assert_eq!(operation["accepted_risks"][0]["code"], "incremental_rule");
    let history = node_state(&mut admin).await["history"].clone();
    assert_eq!(history[0]["accepted_risks"][0]["code"], "incremental_rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_refused_at_stage_and_nothing_changes() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let mut artifact = node.artifact("v1.30.3", true);
    artifact.sha256 = "0".repeat(64);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Failed", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["field"], "Stage");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "checksum_mismatch");
    assert_eq!(step_statuses(&operation)[1], "Stage:Failed");
    assert_eq!(node.installed(), original, "the binary is untouched");
    let leftovers: Vec<_> = std::fs::read_dir(node.agent.dir().join(".upkeep"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "no staged file is left: {leftovers:?}");
    assert_eq!(node_state(&mut operator).await["phase"], "Idle", "a failure before the swap does not degrade the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_over_the_size_limit_is_refused() {
    let node = Node::start("v1.30.2", "[artifacts]\nmax_bytes = 64\n").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Failed");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "artifact_too_large");
    assert_eq!(node.installed(), original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_against_the_trusted_keys() {
    let trusted = SigningKey::from_bytes(&[7u8; 32]);
    let stranger = SigningKey::from_bytes(&[9u8; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(trusted.verifying_key().to_bytes());
    let node = Node::start("v1.30.2", &format!("[artifacts]\ntrusted_keys = [\"{public}\"]\n")).await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);
    let digest: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&artifact.sha256[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let sign = |key: &SigningKey| base64::engine::general_purpose::STANDARD.encode(key.sign(&digest).to_bytes());

    let unsigned = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(unsigned.status, 422);
    assert_eq!(unsigned.json()["error"]["details"][0]["code"], "signature_required");

    let mut forged = upgrade_body("v1.30.3", &artifact, None);
    forged["artifacts"][0]["signature"] = sign(&stranger).into();
    let reply = post(&mut operator, "/v1/upgrades", &forged).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Failed");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "signature_invalid");
    assert_eq!(node.installed(), original);

    let mut signed = upgrade_body("v1.30.3", &artifact, None);
    signed["artifacts"][0]["signature"] = sign(&trusted).into();
    let reply = post(&mut operator, "/v1/upgrades", &signed).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    assert_eq!(node.installed(), artifact.bytes);
    assert_eq!(node_state(&mut operator).await["history"][0]["verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_new_binary_is_rolled_back_and_the_node_degraded() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", false);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "health_check_failed");
    assert_eq!(node.installed(), original, "the old bytes are back");
    assert_eq!(node.restarts(), 2, "restarted onto the new binary, then back onto the old one");
    let state = node_state(&mut operator).await;
    assert_eq!(state["phase"], "Degraded");
    assert_eq!(state["components"][0]["observed_version"], "v1.30.2");
    let degraded = condition(&state, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "UpgradeRolledBack");
    assert_eq!(state["history"][0]["state"], "RolledBack");

    let next = node.artifact("v1.30.4", true);
    let refused = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.4", &next, None)).await;
    assert_eq!(refused.status, 409, "a Degraded node needs force");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_operation_while_one_runs_is_409_and_cancel_after_swap_rolls_back() {
    let port = start_health_server().await;
    let node = Node::start_with(&slow_setup("v1.30.2", port, "3", ""));
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    let id = reply.json()["id"].as_str().expect("id").to_owned();
    wait_for_step(&mut operator, &id, "Restart", "Running", WITHIN).await;

    let second = post(&mut operator, "/v1/cordon", &serde_json::json!({})).await;
    assert_eq!(second.status, 409);
    assert_eq!(second.json()["error"]["code"], "operation_in_progress");

    let cancel = post(&mut operator, &format!("/v1/operations/{id}/cancel"), &serde_json::json!({})).await;
    assert_eq!(cancel.status, 202);
    let operation = wait_for_end(&mut operator, &id, WITHIN).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(node.installed(), original);
    let state = node_state(&mut operator).await;
    assert_eq!(state["phase"], "Idle", "a cancel is not a failure: the node is not Degraded");
    let late = post(&mut operator, &format!("/v1/operations/{id}/cancel"), &serde_json::json!({})).await;
    assert_eq!(late.status, 409, "an ended operation cannot be cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_swap_aborts_cleanly() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let fifo = node.artifacts.path().join("slow-artifact");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let body = serde_json::json!({
        "target_version": "v1.30.3",
        "artifacts": [{"component": "kubelet", "source": format!("file://{}", fifo.display()), "sha256": "1".repeat(64)}],
    });
    let reply = post(&mut operator, "/v1/upgrades", &body).await;
    let id = reply.json()["id"].as_str().expect("id").to_owned();
    wait_for_step(&mut operator, &id, "Stage", "Running", WITHIN).await;
    let cancel = post(&mut operator, &format!("/v1/operations/{id}/cancel"), &serde_json::json!({})).await;
    assert_eq!(cancel.status, 202);
    let operation = wait_for_end(&mut operator, &id, WITHIN).await;
    // Nothing reads the pipe any more (not even a thread left blocked opening it).
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .map(drop)
        .map_err(|error| error.raw_os_error());
    assert_eq!(writer, Err(Some(nix::libc::ENXIO)), "the cancelled stage still holds the FIFO");
    let leftovers: Vec<_> = std::fs::read_dir(node.agent.kubelet_path().with_file_name(".upkeep"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "the cancelled stage left files behind: {leftovers:?}");
    assert_eq!(operation["phase"], "Cancelled", "{operation:#}");
    assert_eq!(step_statuses(&operation)[1], "Stage:Failed");
    assert_eq!(node.installed(), original);
    assert_eq!(node.restarts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_to_the_previous_completed_version() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);
    let reply = post(&mut operator, "/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None)).await;
    let upgrade = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(upgrade["phase"], "Succeeded");

    assert_eq!(
        post(&mut operator, "/v1/rollback", &serde_json::json!({})).await.status,
        403,
        "rollback needs an admin"
    );
    let mut admin = node.client("admin").await;
    let reply = post(&mut admin, "/v1/rollback", &serde_json::json!({"request_token": "undo-1"})).await;
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["kind"], "rollback");
    let rollback = wait_for_end(&mut admin, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(rollback["phase"], "Succeeded", "{rollback:#}");
    assert_eq!(node.installed(), original);
    let state = node_state(&mut admin).await;
    assert_eq!(state["components"][0]["observed_version"], "v1.30.2");
    let states: Vec<&str> =
        state["history"].as_array().expect("history").iter().filter_map(|h| h["state"].as_str()).collect();
    assert_eq!(states, ["Completed", "RolledBack"]);
    let again = post(&mut admin, "/v1/rollback", &serde_json::json!({})).await;
    assert_eq!(again.status, 409, "the kept binary is used up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_runs_precheck_alone() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);
    let mut body = upgrade_body("v1.30.3", &artifact, None);
    body["dry_run"] = true.into();
    let reply = post(&mut operator, "/v1/upgrades", &body).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded");
    assert_eq!(operation["dry_run"], true);
    let statuses = step_statuses(&operation);
    assert_eq!(statuses[0], "PreCheck:Success");
    assert!(statuses[1..].iter().all(|s| s.ends_with(":Skipped")), "{statuses:?}");
    assert_eq!(node.installed(), original);
    assert!(node_state(&mut operator).await["history"].as_array().is_some_and(Vec::is_empty));

    let absent = format!("file://{}", node.artifacts.path().join("absent-kubelet").display());
    let missing = serde_json::json!({"target_version": "v1.30.3", "dry_run": true,
        "artifacts": [{"component": "kubelet", "source": absent, "sha256": "1".repeat(64)}]});
    let reply = post(&mut operator, "/v1/upgrades", &missing).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Failed");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "artifact_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_against_a_changed_node() {
    let node = Node::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let etag = operator.get("/v1/node").await.expect("reply").header("etag").expect("etag");
    let artifact = node.artifact("v1.30.3", true);
    let body = upgrade_body("v1.30.3", &artifact, None).to_string();
    let send = |tag: &str| {
        request(
            Method::POST,
            "/v1/upgrades",
            &[("content-type", "application/json"), ("if-match", tag)],
            Bytes::from(body.clone()),
        )
    };
    assert_eq!(operator.send(send("\"stale\"")).await.expect("reply").status, 412);
    let accepted = operator.send(send(&etag)).await.expect("reply");
    assert_eq!(accepted.status, 202);
    wait_for_end(&mut operator, accepted.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operator.send(send(&etag)).await.expect("reply").status, 412, "the node changed since that ETag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_components_are_all_swapped_or_none() {
    let port = start_health_server().await;
    let mut two = setup("v1.30.2", port, "");
    two.more_components = vec!["kube-proxy".to_owned()];
    let node = Node::start_with(&two);
    let mut operator = node.client("operator").await;
    let proxy_path = node.agent.dir().join("kube-proxy");
    let kubelet_before = node.installed();
    let proxy_before = std::fs::read(&proxy_path).expect("kube-proxy");
    let kubelet = node.artifact("v1.30.3", true);
    let bad_proxy = component_artifact(node.artifacts.path(), "kube-proxy", "v1.30.3", false);
    let body = |proxy: &Artifact| {
        serde_json::json!({"target_version": "v1.30.3", "artifacts": [
            {"component": "kubelet", "source": kubelet.url(), "sha256": kubelet.sha256},
            {"component": "kube-proxy", "source": proxy.url(), "sha256": proxy.sha256}]})
    };
    let reply = post(&mut operator, "/v1/upgrades", &body(&bad_proxy)).await;
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(node.installed(), kubelet_before, "the healthy kubelet was rolled back with its partner");
    assert_eq!(std::fs::read(&proxy_path).expect("kube-proxy"), proxy_before);

    let mut admin = node.client("admin").await;
    let good_proxy = component_artifact(node.artifacts.path(), "kube-proxy", "v1.30.3", true);
    let mut forced = body(&good_proxy);
    forced["force"] = true.into();
    let reply = post(&mut admin, "/v1/upgrades", &forced).await;
    let operation = wait_for_end(&mut admin, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    assert_eq!(node.installed(), kubelet.bytes);
    assert_eq!(std::fs::read(&proxy_path).expect("kube-proxy"), good_proxy.bytes);
    let state = node_state(&mut admin).await;
    assert_eq!(state["phase"], "Idle", "a successful upgrade clears Degraded");
    let versions: Vec<&str> = state["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["observed_version"].as_str())
        .collect();
    assert_eq!(versions, ["v1.30.3", "v1.30.3"]);
}
