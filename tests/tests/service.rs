//! `upkeep serve` end to end: the real service process, real agent processes,
//! and curl as the platform's client. An upgrade is accepted and followed to
//! its end through the workflow; requests are refused by role, by cluster, by
//! the catalog, the incremental rule, the policy and `If-Match`; the same
//! request token answers with the same update; a second upgrade while one
//! runs is refused naming it; the event stream resumes from any position.

use std::time::{Duration, Instant};

use serde_json::Value;
use upkeep_tests::curl::{CurlReply, curl};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::fleet::Fleet;
use upkeep_tests::service_process::{ServiceProcess, release, write_service};
use upkeep_tests::upgrades::{kubelet_artifact, setup, slow_setup};

const CLUSTER: &str = "prod";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A fleet of `count` workers at v1.30.2 and a catalog offering v1.30.3, a
/// v1.31.0 with a known risk, and v1.32.0 (two minors ahead). The runtime
/// serves the kubelets' health checks: keep it while the fleet runs.
fn fleet_and_catalog(
    count: usize,
    policy: &str,
) -> (tokio::runtime::Runtime, Fleet, upkeep_tests::service_process::ServiceFiles) {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, count);
    let dir = fleet.dir.path();
    let mut releases = release("1.30.3", &["stable"], &kubelet_artifact(dir, "v1.30.3", true), &[]);
    let risky = [("CgroupV1Removed", "nodes on cgroup v1 will not start kubelet 1.31")];
    releases.push_str(&release("1.31.0", &["stable"], &kubelet_artifact(dir, "v1.31.0", true), &risky));
    releases.push_str(&release("1.32.0", &["stable"], &kubelet_artifact(dir, "v1.32.0", true), &[]));
    let files = write_service(&fleet, CLUSTER, &releases, policy, "");
    (runtime, fleet, files)
}

fn get(fleet: &Fleet, service: &ServiceProcess, client: &str, path: &str) -> CurlReply {
    curl(&fleet.pki, service.addr, Some(client), path, &[])
}

fn send(
    fleet: &Fleet,
    service: &ServiceProcess,
    client: &str,
    method: &str,
    path: &str,
    body: &Value,
    headers: &[&str],
) -> CurlReply {
    let body = body.to_string();
    let mut extra = vec!["-X", method, "-H", "Content-Type: application/json", "--data", body.as_str()];
    for header in headers {
        extra.push("-H");
        extra.push(header);
    }
    curl(&fleet.pki, service.addr, Some(client), path, &extra)
}

/// Polls `path` until `done` holds for its JSON, or panics after `within`.
fn wait_for(
    fleet: &Fleet,
    service: &ServiceProcess,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = get(fleet, service, "reader", path);
        if reply.status == Some(200) && done(&reply.json()) {
            return reply.json();
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not get there within {within:?}: {}\n{}",
            reply.body,
            service.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The update's events from `from`, read to the end of the stream (the update's end).
fn events(fleet: &Fleet, service: &ServiceProcess, update: &str, from: u64) -> Vec<Value> {
    let path = format!("/v1/clusters/{CLUSTER}/updates/{update}/events?from={from}");
    let reply = curl(&fleet.pki, service.addr, Some("reader"), &path, &["--max-time", "120"]);
    assert_eq!(reply.status, Some(200), "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply
        .body
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not an event ({e}): {line}")))
        .collect()
}

/// Whether a JSON value is `version` (`1.30.3` and `v1.30.3` are the same version).
fn is_version(value: &Value, version: &str) -> bool {
    let parsed = value.as_str().and_then(|text| text.parse::<upkeep_common::Version>().ok());
    parsed.is_some() && parsed == version.parse().ok()
}

fn error_code(reply: &CurlReply) -> String {
    reply.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn an_upgrade_is_refused_for_the_right_reasons_then_runs_its_workflow_to_the_end() {
    let (_health, fleet, files) = fleet_and_catalog(3, "max_unavailable = \"1\"\nprestage = true\n");
    fleet.pki.issue_client("other-ops", "other-ops", Some("upkeep:operator:other"));
    fleet.pki.issue_client("prod-ops", "prod-ops", Some("upkeep:operator:prod"));
    let service = ServiceProcess::start(&files);
    let cluster_path = format!("/v1/clusters/{CLUSTER}");
    let upgrade_path = format!("{cluster_path}/upgrade");

    assert_eq!(get(&fleet, &service, "norole", "/healthz").status, Some(200));
    let ready = get(&fleet, &service, "norole", "/readyz").json();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(get(&fleet, &service, "norole", &cluster_path).status, Some(403), "no role reads nothing");
    let cluster = wait_for(&fleet, &service, &cluster_path, Duration::from_secs(30), |c| {
        is_version(&c["observed_kubernetes_version"], "1.30.2")
    });
    assert_eq!(cluster["status"], "running");
    assert_eq!(cluster["current_update"], Value::Null);
    let offered = cluster["available_updates"].as_array().expect("a list");
    assert!(
        offered.len() == 1 && is_version(&offered[0]["version"], "1.30.3"),
        "the next minor has a risk and 1.32 skips one: {cluster}"
    );
    assert!(is_version(&cluster["conditional_updates"][0]["release"]["version"], "1.31.0"), "{cluster}");
    assert_eq!(cluster["conditional_updates"][0]["risks"][0]["name"], "CgroupV1Removed");

    let to = |version: &str| serde_json::json!({ "target_version": version });
    for (method, path) in [
        ("POST", upgrade_path.clone()),
        ("PATCH", cluster_path.clone()),
        ("POST", format!("{cluster_path}/updates/u1/pause")),
        ("POST", format!("{cluster_path}/updates/u1/resume")),
        ("POST", format!("{cluster_path}/updates/u1/cancel")),
    ] {
        let refused = send(&fleet, &service, "reader", method, &path, &to("1.30"), &[]);
        assert_eq!(
            (refused.status, error_code(&refused).as_str()),
            (Some(403), "forbidden"),
            "a reader writes nothing: {method} {path}"
        );
    }
    let patch = serde_json::json!({ "version": "1.30" });
    let refused = curl(
        &fleet.pki,
        service.addr,
        Some("operator"),
        &cluster_path,
        &["-X", "PATCH", "-H", "Content-Type: text/plain", "--data", &patch.to_string()],
    );
    assert_eq!(refused.status, Some(415), "{}", refused.body);
    let refused = send(&fleet, &service, "other-ops", "POST", &upgrade_path, &to("1.30"), &[]);
    assert_eq!(refused.status, Some(403), "an operator of another cluster: {}", refused.body);
    let refused = send(&fleet, &service, "operator", "POST", &upgrade_path, &to("1.32"), &[]);
    assert_eq!((refused.status, error_code(&refused).as_str()), (Some(422), "version_refused"), "{}", refused.body);
    let refused = send(&fleet, &service, "operator", "POST", &upgrade_path, &to("1.29.9"), &[]);
    assert_eq!(refused.status, Some(422));
    assert!(refused.body.contains("1.29.9") && refused.body.contains("version_not_in_catalog"), "{}", refused.body);
    let refused = send(&fleet, &service, "operator", "POST", &upgrade_path, &to("1.31"), &[]);
    assert!(refused.status == Some(422) && refused.body.contains("CgroupV1Removed"), "{}", refused.body);
    let narrowing = serde_json::json!({ "target_version": "1.30", "policy": { "max_unavailable": "1" } });
    let refused = send(&fleet, &service, "operator", "POST", &upgrade_path, &narrowing, &[]);
    assert_eq!(refused.status, Some(403), "policy overrides are admin only: {}", refused.body);
    let widening = serde_json::json!({ "target_version": "1.30", "policy": { "max_unavailable": "3" } });
    let refused = send(&fleet, &service, "admin", "POST", &upgrade_path, &widening, &[]);
    assert!(refused.status == Some(422) && refused.body.contains("widens_policy"), "{}", refused.body);
    let refused = send(&fleet, &service, "operator", "POST", &upgrade_path, &to("1.30"), &["If-Match: \"stale\""]);
    assert_eq!((refused.status, error_code(&refused).as_str()), (Some(412), "precondition_failed"));

    let etag = get(&fleet, &service, "reader", &cluster_path).header("etag").expect("an ETag").to_owned();
    let body = serde_json::json!({ "target_version": "1.30", "request_token": "platform-req-1" });
    let accepted = send(&fleet, &service, "prod-ops", "POST", &upgrade_path, &body, &[&format!("If-Match: {etag}")]);
    assert_eq!(accepted.status, Some(202), "{}", accepted.body);
    let update = accepted.json()["update"].clone();
    let id = update["id"].as_str().expect("an update id").to_owned();
    assert!(is_version(&update["target_version"], "1.30.3"), "1.30 is the newest patch of the channel: {update}");
    assert_eq!(accepted.json()["cluster"], CLUSTER);
    let again = send(&fleet, &service, "operator", "POST", &upgrade_path, &body, &[]);
    assert_eq!(
        (again.status, again.json()["update"]["id"].as_str()),
        (Some(202), Some(id.as_str())),
        "same token, same update"
    );
    let fresh = get(&fleet, &service, "reader", &cluster_path).header("etag").expect("an ETag").to_owned();
    assert_ne!(fresh, etag, "the spec changed: the desired version is set");
    let second =
        send(&fleet, &service, "operator", "POST", &upgrade_path, &to("1.30.3"), &[&format!("If-Match: {fresh}")]);
    assert_eq!((second.status, error_code(&second).as_str()), (Some(409), "update_in_progress"), "{}", second.body);
    assert!(second.body.contains(&id), "the refusal names the running update: {}", second.body);

    let all = events(&fleet, &service, &id, 1);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "numbered from 1 without a gap");
    let task_changes: Vec<(String, String)> = all
        .iter()
        .filter(|e| e["event"] == "task")
        .map(|e| {
            (e["task"].as_str().unwrap_or_default().to_owned(), e["status"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = ["PreCheck", "Snapshot", "Upgrade", "PostCheck"]
        .iter()
        .flat_map(|task| [((*task).to_owned(), "Running".to_owned()), ((*task).to_owned(), "Success".to_owned())])
        .collect();
    assert_eq!(task_changes, expected, "the tasks pass in order: {all:?}");
    let finished = all.iter().filter(|e| e["event"] == "node_finished" && e["outcome"] == "patched").count();
    assert_eq!(finished, 3, "{all:?}");
    assert_eq!(all.last().map(|e| e["status"].clone()), Some(Value::from("Successful")));
    let tail = events(&fleet, &service, &id, 4);
    assert_eq!(tail, all[3..].to_vec(), "from a position: nothing lost, nothing repeated");

    let ended = get(&fleet, &service, "reader", &format!("{cluster_path}/updates/{id}")).json();
    assert_eq!(ended["status"], "Successful", "{ended}");
    assert_eq!(ended["counters"]["workers"]["patched"], 3);
    assert_eq!(ended["requested_by"], "prod-ops");
    assert!(
        ended["tasks"].as_array().expect("tasks").iter().all(|t| t["status"] == "Success" && t["ended_at"].is_string())
    );
    assert_eq!(ended["nodes"].as_array().map(Vec::len), Some(3));
    let cluster = wait_for(&fleet, &service, &cluster_path, Duration::from_secs(30), |c| {
        is_version(&c["observed_kubernetes_version"], "1.30.3")
    });
    assert_eq!((cluster["workers_patched"].as_u64(), cluster["workers_pending"].as_bool()), (Some(3), Some(false)));
    assert_eq!(cluster["history"][0]["state"], "Completed", "{cluster}");
    assert!(is_version(&cluster["history"][0]["version"], "1.30.3"));
    assert!(is_version(&cluster["k8s_version"], "1.30.3"));
    for history in fleet.histories() {
        let entries: Vec<&Value> =
            history.as_array().expect("history").iter().filter(|h| is_version(&h["version"], "1.30.3")).collect();
        assert_eq!(entries.len(), 1, "each node upgraded exactly once: {history}");
    }
    let listed = get(&fleet, &service, "reader", &format!("{cluster_path}/updates")).json();
    assert_eq!(listed["updates"][0]["id"], id.as_str());
}

/// Like [`fleet_and_catalog`], with kubelets whose restart takes a second, so
/// an update is caught while it runs.
fn slow_fleet_and_catalog(
    count: usize,
    policy: &str,
) -> (tokio::runtime::Runtime, Fleet, upkeep_tests::service_process::ServiceFiles) {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let names: Vec<String> = (1..=count).map(|n| format!("worker-{n}")).collect();
    let fleet = Fleet::start(
        names.iter().map(|name| (name.as_str(), "worker", "a", slow_setup("v1.30.2", port, "1", ""))).collect(),
    );
    let dir = fleet.dir.path();
    let mut releases = release("1.30.3", &["stable"], &kubelet_artifact(dir, "v1.30.3", true), &[]);
    releases.push_str(&release("1.31.0", &["stable"], &kubelet_artifact(dir, "v1.31.0", true), &[]));
    let files = write_service(&fleet, CLUSTER, &releases, policy, "");
    (runtime, fleet, files)
}

fn start_upgrade(fleet: &Fleet, service: &ServiceProcess, version: &str) -> String {
    let body = serde_json::json!({ "target_version": version });
    let accepted = send(fleet, service, "operator", "POST", &format!("/v1/clusters/{CLUSTER}/upgrade"), &body, &[]);
    assert_eq!(accepted.status, Some(202), "{}", accepted.body);
    accepted.json()["update"]["id"].as_str().expect("an update id").to_owned()
}

fn wait_for_nodes_read(fleet: &Fleet, service: &ServiceProcess, version: &str) {
    wait_for(fleet, service, &format!("/v1/clusters/{CLUSTER}"), Duration::from_secs(30), |c| {
        is_version(&c["observed_kubernetes_version"], version)
    });
}

#[test]
fn a_sigkilled_service_resumes_its_update_on_restart_and_no_node_is_upgraded_twice() {
    let (_health, fleet, files) = slow_fleet_and_catalog(4, "max_unavailable = \"1\"\n");
    let mut service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let id = start_upgrade(&fleet, &service, "1.30.3");
    let update_path = format!("/v1/clusters/{CLUSTER}/updates/{id}");
    wait_for(&fleet, &service, &update_path, Duration::from_secs(60), |u| {
        u["counters"]["workers"]["patched"].as_u64() >= Some(1)
    });
    let stream = format!("/v1/clusters/{CLUSTER}/updates/{id}/events?from=1");
    let before = curl(&fleet.pki, service.addr, Some("reader"), &stream, &["--max-time", "1"]);
    let seen: Vec<Value> =
        before.body.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!seen.is_empty(), "events were streamed before the kill: {before:?}");
    let killed_at = Instant::now();
    service.kill();

    let service = ServiceProcess::start(&files);
    let moving = wait_for(&fleet, &service, &update_path, Duration::from_secs(60), |u| {
        u["status"] == "Successful" || u["counters"]["workers"]["patched"].as_u64() >= Some(2)
    });
    println!("from SIGKILL to the update moving again: {:?} ({})", killed_at.elapsed(), moving["status"]);
    let ended = wait_for(&fleet, &service, &update_path, Duration::from_secs(90), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Successful", "{ended}\n{}", service.log());
    assert_eq!(ended["counters"]["workers"]["patched"], 4, "{ended}");
    for history in fleet.histories() {
        let entries =
            history.as_array().expect("history").iter().filter(|h| is_version(&h["version"], "1.30.3")).count();
        assert_eq!(entries, 1, "each node upgraded exactly once, across the kill: {history}");
    }
    let all = events(&fleet, &service, &id, 1);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "numbers survive the restart, none repeated");
    assert_eq!(all[..seen.len()].to_vec(), seen, "what a client saw before the kill is unchanged after it");
    let resumed = events(&fleet, &service, &id, seen.len() as u64 + 1);
    assert_eq!(resumed, all[seen.len()..].to_vec(), "resuming from the next position loses and repeats nothing");
    let precheck_runs =
        all.iter().filter(|e| e["event"] == "task" && e["task"] == "PreCheck" && e["status"] == "Running").count();
    assert_eq!(precheck_runs, 1, "a task that succeeded is not run again: {all:?}");
}

#[test]
fn pause_holds_new_nodes_resume_finishes_and_cancel_stops_for_good() {
    let (_health, fleet, files) = slow_fleet_and_catalog(3, "max_unavailable = \"1\"\n");
    let service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let id = start_upgrade(&fleet, &service, "1.30.3");
    let update_path = format!("/v1/clusters/{CLUSTER}/updates/{id}");
    wait_for(&fleet, &service, &update_path, Duration::from_secs(60), |u| u["tasks"][2]["status"] == "Running");
    let none = serde_json::json!({});
    let refused = send(&fleet, &service, "reader", "POST", &format!("{update_path}/pause"), &none, &[]);
    assert_eq!(refused.status, Some(403));
    let paused = send(&fleet, &service, "operator", "POST", &format!("{update_path}/pause"), &none, &[]);
    assert_eq!(paused.status, Some(200), "{}", paused.body);
    let held = wait_for(&fleet, &service, &update_path, Duration::from_secs(60), |u| u["status"] == "Paused");
    assert_eq!(held["waiting"]["reason"], "paused", "{held}");
    let pending = held["counters"]["workers"]["pending"].as_u64().expect("pending");
    assert!(pending >= 1, "a paused update leaves nodes to do: {held}");
    let cluster = get(&fleet, &service, "reader", &format!("/v1/clusters/{CLUSTER}")).json();
    assert_eq!((cluster["status"].as_str(), cluster["workers_pending"].as_bool()), (Some("upgrading"), Some(true)));
    std::thread::sleep(Duration::from_secs(2));
    let still = get(&fleet, &service, "reader", &update_path).json();
    assert_eq!(still["counters"]["workers"]["pending"].as_u64(), Some(pending), "no node starts while paused");

    let resumed = send(&fleet, &service, "operator", "POST", &format!("{update_path}/resume"), &none, &[]);
    assert_eq!(resumed.status, Some(200), "{}", resumed.body);
    let ended = wait_for(&fleet, &service, &update_path, Duration::from_secs(90), |u| {
        u["status"] != "InProgress" && u["status"] != "Paused"
    });
    assert_eq!(ended["status"], "Successful", "{ended}");
    let again = send(&fleet, &service, "operator", "POST", &format!("{update_path}/cancel"), &none, &[]);
    assert_eq!((again.status, error_code(&again).as_str()), (Some(409), "conflict"), "an ended update is not steered");

    wait_for_nodes_read(&fleet, &service, "1.30.3");
    let next = start_upgrade(&fleet, &service, "1.31");
    let next_path = format!("/v1/clusters/{CLUSTER}/updates/{next}");
    wait_for(&fleet, &service, &next_path, Duration::from_secs(60), |u| u["tasks"][2]["status"] == "Running");
    let cancelled = send(&fleet, &service, "operator", "POST", &format!("{next_path}/cancel"), &none, &[]);
    assert_eq!(cancelled.status, Some(200), "{}", cancelled.body);
    let ended = wait_for(&fleet, &service, &next_path, Duration::from_secs(60), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Cancelled", "{ended}");
    assert!(ended["counters"]["workers"]["pending"].as_u64() >= Some(1), "cancel leaves the rest: {ended}");
    let cluster = get(&fleet, &service, "reader", &format!("/v1/clusters/{CLUSTER}")).json();
    assert_eq!(cluster["current_update"], Value::Null, "{cluster}");
}

#[test]
fn a_node_that_fails_precheck_fails_the_update_before_any_node_is_touched() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, 2);
    let releases = release("1.30.3", &["stable"], &kubelet_artifact(fleet.dir.path(), "v1.30.3", true), &[]);
    let ghost = "\n[[nodes]]\nname = \"ghost\"\naddress = \"127.0.0.30:9\"\nrole = \"worker\"\n";
    let files = write_service(&fleet, CLUSTER, &releases, "max_failures = \"0\"\n", ghost);
    let service = ServiceProcess::start(&files);
    wait_for(&fleet, &service, &format!("/v1/clusters/{CLUSTER}/nodes"), Duration::from_secs(30), |n| {
        n["nodes"].as_array().is_some_and(|nodes| nodes.iter().all(|node| node["read_at"].is_string()))
    });
    let id = start_upgrade(&fleet, &service, "1.30.3");
    let path = format!("/v1/clusters/{CLUSTER}/updates/{id}");
    let ended = wait_for(&fleet, &service, &path, Duration::from_secs(60), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Failed", "{ended}");
    assert_eq!(ended["tasks"][0]["status"], "Failed", "PreCheck failed: {ended}");
    assert_eq!(ended["tasks"][2]["status"], "Init", "the upgrade never started: {ended}");
    let error = &ended["errors"][0];
    assert_eq!(
        (error["error_code"].as_str(), error["task"].as_str()),
        (Some("unreachable"), Some("PreCheck")),
        "{ended}"
    );
    assert_eq!(error["resource_ids"], serde_json::json!(["ghost"]));
    for history in fleet.histories() {
        assert_eq!(history, serde_json::json!([]), "no node was touched");
    }
    let cluster = get(&fleet, &service, "reader", &format!("/v1/clusters/{CLUSTER}")).json();
    assert_eq!(cluster["status"], "degraded", "{cluster}");
    assert_eq!(cluster["history"], serde_json::json!([]), "nothing was upgraded: {cluster}");
}

#[test]
fn a_node_that_fails_its_upgrade_is_counted_and_named_and_the_history_says_partial() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let fleet = Fleet::start(vec![
        ("worker-1", "worker", "a", setup("v1.30.2", port, "")),
        ("worker-2", "worker", "a", setup("v1.30.2", port, "")),
        ("worker-3", "worker", "a", setup("v1.30.2", dead_port, "")),
    ]);
    let releases = release("1.30.3", &["stable"], &kubelet_artifact(fleet.dir.path(), "v1.30.3", true), &[]);
    let files = write_service(&fleet, CLUSTER, &releases, "max_failures = \"1\"\n", "");
    let service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let id = start_upgrade(&fleet, &service, "1.30.3");
    let path = format!("/v1/clusters/{CLUSTER}/updates/{id}");
    let ended = wait_for(&fleet, &service, &path, Duration::from_secs(90), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Failed", "{ended}");
    let workers = &ended["counters"]["workers"];
    assert_eq!((workers["patched"].as_u64(), workers["error"].as_u64()), (Some(2), Some(1)), "{ended}");
    let error = &ended["errors"][0];
    assert_eq!(error["task"], "Upgrade");
    assert_eq!(error["resource_ids"], serde_json::json!(["worker-3"]), "{ended}");
    assert!(error["error_code"].as_str().is_some_and(|code| !code.is_empty()), "{ended}");
    let node =
        ended["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == "worker-3").expect("worker-3").clone();
    assert_eq!(node["error"]["code"], error["error_code"], "{node}");
    let cluster = wait_for(&fleet, &service, &format!("/v1/clusters/{CLUSTER}"), Duration::from_secs(30), |c| {
        c["current_update"].is_null()
    });
    assert!(cluster["workers_error"].as_str().is_some_and(|e| e.starts_with("1 workers failed")), "{cluster}");
    assert_eq!(cluster["history"][0]["state"], "Partial", "{cluster}");
    let degraded = cluster["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("Degraded")
        .clone();
    assert_eq!(degraded["status"], "True", "{cluster}");
}

/// `upkeep cluster ...` against the service, as the `operator` client.
fn upkeep_cluster(fleet: &Fleet, service: &ServiceProcess, args: &[&str]) -> std::process::Output {
    let client = fleet.pki.client("operator");
    let server = format!("https://{}", service.addr);
    let mut command = std::process::Command::new(upkeep_tests::binaries::path("upkeep"));
    command.arg("cluster").args(args).arg("--server").arg(&server).arg("--ca").arg(fleet.pki.ca_cert());
    command.arg("--cert").arg(&client.cert).arg("--key").arg(&client.key);
    command.output().expect("upkeep runs")
}

#[test]
fn the_cluster_command_starts_an_upgrade_and_follows_it_to_its_end() {
    let (_health, fleet, files) = fleet_and_catalog(2, "max_unavailable = \"1\"\n");
    let service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let followed = upkeep_cluster(&fleet, &service, &["upgrade", CLUSTER, "1.30", "--follow", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&followed.stdout);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "a successful update exits 0: {stdout}{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    let last: Value =
        stdout.lines().rfind(|l| !l.trim().is_empty()).and_then(|l| serde_json::from_str(l).ok()).expect("JSON lines");
    assert!(last.to_string().contains("Successful"), "the last line is the ended update: {last}");
    let status = upkeep_cluster(&fleet, &service, &["status", CLUSTER, "--output", "json"]);
    let cluster: Value = serde_json::from_slice(&status.stdout).expect("the cluster as JSON");
    assert_eq!(cluster["history"][0]["state"], "Completed", "{cluster}");
    let refused = upkeep_cluster(&fleet, &service, &["upgrade", CLUSTER, "1.29.0"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1.29.0"), "the refusal names the version");
}

#[test]
fn a_node_that_no_longer_reports_the_target_fails_postcheck_and_moves_to_error() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let probing = "[probe]\ninterval_secs = 1\n";
    let fleet = Fleet::start(vec![
        ("worker-1", "worker", "a", setup("v1.30.2", port, probing)),
        ("worker-2", "worker", "a", slow_setup("v1.30.2", port, "1", probing)),
    ]);
    let releases = release("1.30.3", &["stable"], &kubelet_artifact(fleet.dir.path(), "v1.30.3", true), &[]);
    let policy = "max_unavailable = \"1\"\nmax_failures = \"1\"\nsoak = \"3s\"\n";
    let files = write_service(&fleet, CLUSTER, &releases, policy, "");
    let service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let id = start_upgrade(&fleet, &service, "1.30.3");
    let path = format!("/v1/clusters/{CLUSTER}/updates/{id}");
    // worker-1 goes first (inventory order); once it counts patched, worker-2 runs and soaks for seconds.
    wait_for(&fleet, &service, &path, Duration::from_secs(60), |u| u["counters"]["workers"]["patched"] == 1);
    let worker_1 = &fleet.nodes[0].agent;
    let replaced = worker_1.dir().join("kubelet.replaced");
    upkeep_tests::fake_kubelet::write_script(
        &replaced,
        &upkeep_tests::fake_kubelet::script("kubelet", "v1.30.2", true),
    );
    std::fs::rename(&replaced, worker_1.kubelet_path()).expect("someone puts the old kubelet back");
    let ended = wait_for(&fleet, &service, &path, Duration::from_secs(60), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Failed", "{ended}");
    assert_eq!(ended["tasks"][3]["status"], "Failed", "PostCheck failed: {ended}");
    let workers = &ended["counters"]["workers"];
    assert_eq!((workers["patched"].as_u64(), workers["error"].as_u64()), (Some(1), Some(1)), "{ended}");
    let error = ended["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["task"] == "PostCheck")
        .expect("a PostCheck error")
        .clone();
    assert_eq!(error["error_code"], "postcheck_failed", "{error}");
    assert_eq!(error["resource_ids"], serde_json::json!(["worker-1"]), "{error}");
    let node =
        ended["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == "worker-1").expect("worker-1").clone();
    assert_eq!(node["status"]["state"], "failed", "{node}");
}

#[test]
fn an_admin_rolls_an_update_back_through_the_api_or_by_patching_the_version_back() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, 2);
    let dir = fleet.dir.path();
    let mut releases = release("1.30.2", &["stable"], &kubelet_artifact(dir, "v1.30.2", true), &[]);
    releases.push_str(&release("1.30.3", &["stable"], &kubelet_artifact(dir, "v1.30.3", true), &[]));
    let files = write_service(&fleet, CLUSTER, &releases, "max_unavailable = \"1\"\n", "");
    let service = ServiceProcess::start(&files);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let first = start_upgrade(&fleet, &service, "1.30.3");
    let first_path = format!("/v1/clusters/{CLUSTER}/updates/{first}");
    let ended = wait_for(&fleet, &service, &first_path, Duration::from_secs(60), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Successful", "{ended}");

    let none = serde_json::json!({});
    let refused = send(&fleet, &service, "operator", "POST", &format!("{first_path}/rollback"), &none, &[]);
    assert_eq!(refused.status, Some(403), "a rollback is admin only: {}", refused.body);
    let accepted = send(&fleet, &service, "admin", "POST", &format!("{first_path}/rollback"), &none, &[]);
    assert_eq!(accepted.status, Some(202), "{}", accepted.body);
    let back = accepted.json()["update"].clone();
    assert_eq!(back["type"], "Rollback", "{back}");
    assert!(is_version(&back["target_version"], "1.30.2"), "back to the version before: {back}");
    let back_path = format!("/v1/clusters/{CLUSTER}/updates/{}", back["id"].as_str().expect("id"));
    let ended = wait_for(&fleet, &service, &back_path, Duration::from_secs(60), |u| u["status"] != "InProgress");
    assert_eq!(ended["status"], "Successful", "{ended}");
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let again = send(&fleet, &service, "admin", "POST", &format!("{back_path}/rollback"), &none, &[]);
    assert_eq!(
        (again.status, error_code(&again).as_str()),
        (Some(422), "validation_failed"),
        "a rollback is not rolled back"
    );

    let cluster_path = format!("/v1/clusters/{CLUSTER}");
    let forward =
        send(&fleet, &service, "operator", "PATCH", &cluster_path, &serde_json::json!({ "version": "1.30.3" }), &[]);
    assert_eq!(forward.status, Some(202), "{}", forward.body);
    let forward_path = format!("{cluster_path}/updates/{}", forward.json()["update"]["id"].as_str().expect("id"));
    wait_for(&fleet, &service, &forward_path, Duration::from_secs(60), |u| u["status"] == "Successful");
    wait_for_nodes_read(&fleet, &service, "1.30.3");
    let patch_back = serde_json::json!({ "version": "1.30.2" });
    let refused = send(&fleet, &service, "operator", "PATCH", &cluster_path, &patch_back, &[]);
    assert_eq!(refused.status, Some(403), "patching back is a rollback, admin only: {}", refused.body);
    let patched = send(&fleet, &service, "admin", "PATCH", &cluster_path, &patch_back, &[]);
    assert_eq!(patched.status, Some(202), "{}", patched.body);
    assert_eq!(patched.json()["update"]["type"], "Rollback", "{}", patched.body);
    wait_for_nodes_read(&fleet, &service, "1.30.2");
    let cluster = get(&fleet, &service, "reader", &cluster_path).json();
    assert!(is_version(&cluster["k8s_version"], "1.30.2"), "the desired version is the one rolled back to: {cluster}");
}
