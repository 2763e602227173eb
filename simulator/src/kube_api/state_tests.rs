//! Tests of the fake API server's objects and how requests change them.

use super::*;

#[test]
fn budgets_refuse_then_allow_and_pods_terminate() {
    let mut state = ApiState::new("v1.30.2");
    state.add_node("worker-1");
    let mut guarded = FakePod::running("default", "web", "worker-1");
    guarded.budget_refusals = 2;
    guarded.terminate_after = Duration::from_secs(5);
    state.add_pod(guarded);
    let now = Instant::now();
    let eviction = br#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}}"#;
    let path = "/api/v1/namespaces/default/pods/web/eviction";
    assert_eq!(state.handle("POST", path, "", "application/json", eviction, now).0, 429);
    assert_eq!(state.handle("POST", path, "", "application/json", eviction, now).0, 429);
    assert_eq!(state.handle("POST", path, "", "application/json", eviction, now).0, 201);
    let pod = state.handle("GET", "/api/v1/namespaces/default/pods/web", "", "", b"", now);
    assert!(pod.1["metadata"]["deletionTimestamp"].is_string());
    let later = now + Duration::from_secs(6);
    assert_eq!(state.handle("GET", "/api/v1/namespaces/default/pods/web", "", "", b"", later).0, 404);
    assert_eq!(state.eviction_log.len(), 3);
}

#[test]
fn a_kubelet_start_moves_the_version_and_the_heartbeat() {
    let mut state = ApiState::new("v1.30.2");
    state.add_node("worker-1");
    let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:05.700Z").expect("time").to_utc();
    state.kubelet_started("worker-1", "v1.30.3", at);
    let node = state.node("worker-1").expect("node");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.30.3");
    assert_eq!(node["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(node["status"]["conditions"][0]["lastHeartbeatTime"], "2026-01-01T00:00:05Z");
    let later = at + chrono::Duration::seconds(10);
    state.set_ready("worker-1", "Unknown", later);
    let node = state.node("worker-1").expect("node");
    assert_eq!(node["status"]["conditions"][0]["status"], "Unknown");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.30.3", "the version stays");
}

#[test]
fn patches_need_a_patch_content_type() {
    let mut state = ApiState::new("v1.30.2");
    state.add_node("worker-1");
    let body = br#"{"spec": {"unschedulable": true}}"#;
    let now = Instant::now();
    assert_eq!(state.handle("PATCH", "/api/v1/nodes/worker-1", "", "application/json", body, now).0, 415);
    let (code, node) = state.handle("PATCH", "/api/v1/nodes/worker-1", "", "application/merge-patch+json", body, now);
    assert_eq!(code, 200);
    assert_eq!(node["spec"]["unschedulable"], true);
}

#[test]
fn lists_pods_by_node() {
    let mut state = ApiState::new("v1.30.2");
    state.add_pod(FakePod::running("a", "one", "worker-1"));
    state.add_pod(FakePod::running("a", "two", "worker-2"));
    let (code, list) =
        state.handle("GET", "/api/v1/pods", "fieldSelector=spec.nodeName%3Dworker-1", "", b"", Instant::now());
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(state.handle("GET", "/api/v1/pods", "", "", b"", Instant::now()).0, 400);
    assert_eq!(state.handle("GET", "/version", "", "", b"", Instant::now()).1["minor"], "30");
}
