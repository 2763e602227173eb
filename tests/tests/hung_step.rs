//! A step that hangs, through a real agent process: the kubelet's restart
//! command hangs once (it removes its marker file and sleeps far past
//! `timeouts.restart_secs`). The Restart step must fail with `step_timeout`,
//! the operation must end rolled back by its deadline with the old binary and
//! version in place, and the node must take new work afterwards.

use std::time::Duration;

use upkeep_common::api::{Operation, StepName};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::upgrades::{UpgradeNode, setup, step_statuses, upgrade_body, wait_for_end};

/// `timeouts.restart_secs` of the agent under test.
const RESTART_SECS: u64 = 1;
/// How long the test waits for any operation to end (a bound, not an expectation).
const WITHIN: Duration = Duration::from_secs(60);

/// How long `step` ran, by the times the agent recorded.
fn ran(operation: &serde_json::Value, step: StepName) -> Duration {
    let operation: Operation = serde_json::from_value(operation.clone()).expect("an operation");
    let step = operation.steps.iter().find(|s| s.name == step).expect("step present");
    let (Some(started), Some(finished)) = (step.started_at, step.finished_at) else {
        panic!("{step:?} has no start or end");
    };
    (finished - started).to_std().expect("it ended after it started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_restart_fails_at_its_timeout_rolls_back_and_the_node_takes_new_work() {
    let port = start_health_server().await;
    let mut hung = setup("v1.30.2", port, &format!("restart_secs = {RESTART_SECS}\n"));
    hung.component_extra = hung
        .component_extra
        .replace("echo restart >>", "if [ -e {dir}/hang ]; then rm {dir}/hang; sleep 600; fi; echo restart >>");
    let node = UpgradeNode::start_with(&hung);
    std::fs::write(node.agent.dir().join("hang"), b"").expect("marker");
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let artifact = node.artifact("v1.30.3", true);

    let reply = operator.post_json("/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None).to_string()).await;
    let reply = reply.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;

    // The step that hung, and why it failed.
    assert_eq!(
        step_statuses(&operation)[..6],
        ["PreCheck:Success", "Stage:Success", "Cordon:Skipped", "Drain:Skipped", "Swap:Success", "Restart:Failed"],
        "{operation:#}"
    );
    let detail = &operation["errors"][0]["details"][0];
    assert_eq!(detail["field"], "Restart", "{operation:#}");
    assert_eq!(detail["code"], "step_timeout", "{operation:#}");
    // It ran until its timeout, not forever: the recorded times bracket the
    // timeout (the upper bound is generous, for a busy machine).
    let ran = ran(&operation, StepName::Restart);
    assert!(ran >= Duration::from_secs(RESTART_SECS), "Restart ended after {ran:?}, before its timeout");
    assert!(ran < Duration::from_secs(30), "Restart ran {ran:?}, far past its {RESTART_SECS} s timeout");

    // The operation ended rolled back, with the old binary and version in place.
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(node.installed(), original, "the old binary is back, byte for byte");
    let state = operator.get("/v1/node").await.expect("reply").json();
    assert_eq!(state["components"][0]["observed_version"], "v1.30.2", "{state:#}");
    assert_eq!(state["history"][0]["state"], "RolledBack", "{state:#}");
    assert_eq!(state["phase"], "Degraded", "an automatic rollback marks the node: {state:#}");

    // The node takes new work: an admin's forced upgrade runs to the end.
    let mut admin = node.client("admin").await;
    let mut again = upgrade_body("v1.30.3", &artifact, None);
    again["force"] = true.into();
    let reply = admin.post_json("/v1/upgrades", &again.to_string()).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    let operation = wait_for_end(&mut admin, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    assert_eq!(node.installed(), artifact.bytes);
}
