//! `file://` artifact sources through a real agent process: only paths inside
//! `artifacts.file_roots` are read (the test agents' root is the temporary
//! directory); anything else is refused at admission or at Stage, and nothing
//! computed over a refused file is ever reported.

use std::time::Duration;

use upkeep_tests::client::{ApiClient, Reply};
use upkeep_tests::upgrades::{UpgradeNode, hex_digest, step_statuses, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);

/// A file every Linux host has, outside the test agents' file root.
const OUTSIDE: &str = "/etc/passwd";

fn body(source: &str) -> serde_json::Value {
    serde_json::json!({
        "target_version": "v1.30.3",
        "artifacts": [{"component": "kubelet", "source": source, "sha256": "1".repeat(64)}],
    })
}

async fn post(client: &mut ApiClient, body: &serde_json::Value) -> Reply {
    client.post_json("/v1/upgrades", &body.to_string()).await.expect("reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_outside_the_roots_is_422_on_its_field_and_starts_nothing() {
    let node = UpgradeNode::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let inside = node.artifacts.path().display().to_string();
    for source in [format!("file://{OUTSIDE}"), format!("file://{inside}/../../{OUTSIDE}"), "file://etc/passwd".into()]
    {
        let reply = post(&mut operator, &body(&source)).await;
        assert_eq!(reply.status, 422, "{source}: {}", String::from_utf8_lossy(&reply.body));
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "validation_failed", "{source}: {error:#}");
        assert_eq!(error["details"][0]["field"], "artifacts[0].source", "{source}: {error:#}");
        assert_eq!(error["details"][0]["code"], "source_not_allowed", "{source}: {error:#}");
    }
    let operations = operator.get("/v1/operations").await.expect("reply").json();
    assert_eq!(operations["operations"].as_array().map(Vec::len), Some(0), "nothing started: {operations:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_out_of_the_root_fails_precheck_and_the_file_is_never_read() {
    let node = UpgradeNode::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let original = node.installed();
    let link = node.artifacts.path().join("kubelet-v1.30.3");
    std::os::unix::fs::symlink(OUTSIDE, &link).expect("symlink");
    let secret_digest = hex_digest(&std::fs::read(OUTSIDE).expect("readable by the test"));

    let reply = post(&mut operator, &body(&format!("file://{}", link.display()))).await;
    assert_eq!(reply.status, 202, "the path as written is inside the root: {}", String::from_utf8_lossy(&reply.body));
    let id = reply.json()["id"].as_str().expect("id").to_owned();
    let operation = wait_for_end(&mut operator, &id, WITHIN).await;
    assert_eq!(operation["phase"], "Failed", "{operation:#}");
    // PreCheck already opens the source as Stage would, and is refused the same way.
    assert_eq!(step_statuses(&operation)[0], "PreCheck:Failed", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "source_not_allowed", "{operation:#}");
    assert_eq!(node.installed(), original);
    for path in [format!("/v1/operations/{id}"), "/v1/node".to_owned(), "/v1/operations".to_owned()] {
        let text = String::from_utf8_lossy(&operator.get(&path).await.expect("reply").body).into_owned();
        assert!(!text.contains(&secret_digest), "{path} reveals the digest of {OUTSIDE}: {text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(node.agent.dir().join(".upkeep"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "nothing of {OUTSIDE} was staged: {leftovers:?}");
}
