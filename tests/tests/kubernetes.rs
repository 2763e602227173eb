//! Cordon, uncordon and drain done right, through a real agent process and the
//! real Kubernetes client against the fake API server: upkeep uncordons only
//! what the same operation cordoned, drains past disruption budgets with retries
//! or names the pods that blocked, and an unreachable API server fails before
//! anything changes. The node state follows the Node (cordoned by anyone, Ready),
//! and PostCheck waits until the Node reports the new kubelet with a fresh
//! heartbeat (a simulated kubelet posts them when the agent restarts it).

use std::time::Duration;

use upkeep_simulator::kube_api::{FakeApiServer, FakePod, KubeletReports, SimulatedKubelet};
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, Reply, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{kubelet_artifact, setup, step_statuses, upgrade_body, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);

struct Cluster {
    _kubelet: SimulatedKubelet,
    api: FakeApiServer,
    pki: Pki,
    agent: AgentProcess,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(api_version: &str, pods: Vec<FakePod>) -> Cluster {
        Self::start_with(api_version, pods, KubeletReports::VersionAndHeartbeat).await
    }

    async fn start_with(api_version: &str, pods: Vec<FakePod>, reports: KubeletReports) -> Cluster {
        let api = FakeApiServer::start(api_version).await.expect("fake API server");
        api.state().add_node("worker-1");
        for pod in pods {
            api.state().add_pod(pod);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let port = start_health_server().await;
        let extra = format!(
            "[probe]\ninterval_secs = 1\n\n[kubernetes]\nkubeconfig = \"{}\"\nrequest_timeout_secs = 2\n",
            kubeconfig.display()
        );
        let mut node_setup = setup("v1.30.2", port, "");
        node_setup.extra.push_str(&extra);
        let pki = Pki::new();
        let agent = AgentProcess::start_with(&pki, &node_setup);
        let kubelet = api.simulate_kubelet("worker-1", agent.kubelet_path(), agent.dir().join("restarts.log"), reports);
        Cluster { _kubelet: kubelet, api, pki, agent, dir }
    }

    async fn client(&self, role: &str) -> ApiClient {
        ApiClient::connect(self.agent.addr, client_config(&self.pki.ca_cert(), Some(&self.pki.client(role))))
            .await
            .expect("connects")
    }

    fn node(&self) -> serde_json::Value {
        self.api.state().node("worker-1").cloned().expect("node")
    }
}

async fn post(client: &mut ApiClient, path: &str, body: serde_json::Value) -> Reply {
    client.post_json(path, &body.to_string()).await.expect("reply")
}

async fn run(client: &mut ApiClient, path: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = post(client, path, body).await;
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    wait_for_end(client, reply.json()["id"].as_str().expect("id"), WITHIN).await
}

fn guarded(refusals: u32) -> FakePod {
    let mut pod = FakePod::running("default", "web", "worker-1");
    pod.budget_refusals = refusals;
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_then_uncordon_records_who_cordoned() {
    let cluster = Cluster::start("v1.30.2", vec![]).await;
    let mut operator = cluster.client("operator").await;
    let cordon = run(&mut operator, "/v1/cordon", serde_json::json!({})).await;
    assert_eq!(cordon["phase"], "Succeeded", "{cordon:#}");
    let node = cluster.node();
    assert_eq!(node["spec"]["unschedulable"], true);
    assert_eq!(node["metadata"]["annotations"]["upkeep.io/cordoned-by"], cordon["id"]);
    assert_eq!(operator.get("/v1/node").await.expect("reply").json()["cordoned"], true, "the agent reports it");

    let uncordon = run(&mut operator, "/v1/uncordon", serde_json::json!({})).await;
    assert_eq!(uncordon["phase"], "Succeeded", "{uncordon:#}");
    let node = cluster.node();
    assert_eq!(node["spec"]["unschedulable"], false);
    assert!(node["metadata"]["annotations"].get("upkeep.io/cordoned-by").is_none(), "{node}");
    assert_eq!(operator.get("/v1/node").await.expect("reply").json()["cordoned"], false);
    let patches = cluster.api.state().patch_log.len();
    assert_eq!(patches, 2, "one merge patch each way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_cordons_drains_swaps_restarts_and_uncordons() {
    let cluster = Cluster::start("v1.30.9", vec![FakePod::running("default", "web", "worker-1")]).await;
    let mut operator = cluster.client("operator").await;
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    assert!(step_statuses(&operation).iter().all(|s| s.ends_with(":Success")), "{:?}", step_statuses(&operation));
    assert_eq!(cluster.api.state().eviction_log, ["default/web"]);
    assert_eq!(cluster.node()["spec"]["unschedulable"], false, "uncordoned at the end");
    assert_eq!(std::fs::read(cluster.agent.kubelet_path()).expect("kubelet"), artifact.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cordoned_beforehand_stays_cordoned() {
    let cluster = Cluster::start("v1.30.9", vec![]).await;
    cluster.api.state().set_unschedulable("worker-1", true);
    let mut operator = cluster.client("operator").await;
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    let uncordon = &operation["steps"][7];
    assert_eq!(uncordon["status"], "Skipped");
    assert!(uncordon["message"].as_str().is_some_and(|m| m.contains("stays cordoned")), "{uncordon}");
    assert_eq!(cluster.node()["spec"]["unschedulable"], true, "somebody else's cordon is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_skips_daemon_set_mirror_and_finished_pods() {
    let mut daemon = FakePod::running("kube-system", "proxy", "worker-1");
    daemon.daemon_set = true;
    let mut mirror = FakePod::running("kube-system", "static", "worker-1");
    mirror.mirror = true;
    let mut done = FakePod::running("default", "job", "worker-1");
    done.phase = "Succeeded".to_owned();
    let elsewhere = FakePod::running("default", "other", "worker-2");
    let web = FakePod::running("default", "web", "worker-1");
    let cluster = Cluster::start("v1.30.2", vec![daemon, mirror, done, elsewhere, web]).await;
    let mut operator = cluster.client("operator").await;
    let drain = run(&mut operator, "/v1/drain", serde_json::json!({})).await;
    assert_eq!(drain["phase"], "Succeeded", "{drain:#}");
    assert_eq!(cluster.api.state().eviction_log, ["default/web"]);
    let mut left = cluster.api.state().pod_names(std::time::Instant::now());
    left.sort();
    assert_eq!(left, ["default/job", "default/other", "kube-system/proxy", "kube-system/static"]);
    assert_eq!(cluster.node()["spec"]["unschedulable"], true, "a drain leaves the node cordoned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_refuses_three_evictions_then_allows_them() {
    let cluster = Cluster::start("v1.30.2", vec![guarded(3)]).await;
    let mut operator = cluster.client("operator").await;
    let drain = run(&mut operator, "/v1/drain", serde_json::json!({"drain": {"timeout_seconds": 30}})).await;
    assert_eq!(drain["phase"], "Succeeded", "{drain:#}");
    assert_eq!(cluster.api.state().eviction_log.len(), 4, "three refusals and one eviction");
    let message = drain["steps"][1]["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 eviction(s) refused"), "the retries are visible: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_never_allows_fails_at_the_timeout_or_is_forced_by_an_admin() {
    let cluster = Cluster::start("v1.30.9", vec![guarded(u32::MAX)]).await;
    let mut operator = cluster.client("operator").await;
    let original = std::fs::read(cluster.agent.kubelet_path()).expect("kubelet");
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let mut body = upgrade_body("v1.30.3", &artifact, None);
    body["drain"] = serde_json::json!({"timeout_seconds": 2});
    let failed = run(&mut operator, "/v1/upgrades", body.clone()).await;
    assert_eq!(failed["phase"], "Failed", "{failed:#}");
    let detail = &failed["errors"][0]["details"][0];
    assert_eq!(detail["field"], "Drain");
    assert_eq!(detail["code"], "drain_blocked");
    assert!(
        detail["message"].as_str().is_some_and(|m| m.contains("default/web")),
        "the blocking pod is named: {detail}"
    );
    assert_eq!(std::fs::read(cluster.agent.kubelet_path()).expect("kubelet"), original, "nothing was swapped");
    assert_eq!(cluster.node()["spec"]["unschedulable"], false, "uncordoned after the failed drain");

    body["drain"]["on_timeout"] = "force".into();
    assert_eq!(post(&mut operator, "/v1/upgrades", body.clone()).await.status, 403, "forcing needs an admin");
    let mut admin = cluster.client("admin").await;
    let forced = run(&mut admin, "/v1/upgrades", body).await;
    assert_eq!(forced["phase"], "Succeeded", "{forced:#}");
    assert_eq!(cluster.api.state().deletion_log, ["default/web"]);
    assert_eq!(forced["accepted_risks"][0]["code"], "drain_forced");
    let history = admin.get("/v1/node").await.expect("reply").json()["history"].clone();
    assert_eq!(history[0]["accepted_risks"][0]["code"], "drain_forced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_503_or_fails_before_the_swap() {
    let cluster = Cluster::start("v1.30.9", vec![]).await;
    let mut operator = cluster.client("operator").await;
    let original = std::fs::read(cluster.agent.kubelet_path()).expect("kubelet");
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    cluster.api.set_down(true);
    let refused = post(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["code"], "dependency_unavailable");

    // A claimed control-plane version does not stand in for the API server's
    // answer: unconfirmed, it is refused like no claim at all, unless an admin forces.
    let mut body = upgrade_body("v1.30.3", &artifact, None);
    body["control_plane_version"] = "v1.30.9".into();
    let unconfirmed = post(&mut operator, "/v1/upgrades", body.clone()).await;
    assert_eq!(unconfirmed.status, 503, "{}", String::from_utf8_lossy(&unconfirmed.body));
    let mut admin = cluster.client("admin").await;
    body["force"] = true.into();
    let failed = run(&mut admin, "/v1/upgrades", body).await;
    assert_eq!(failed["phase"], "Failed", "{failed:#}");
    assert_eq!(failed["errors"][0]["code"], "dependency_unavailable");
    assert_eq!(failed["errors"][0]["details"][0]["field"], "Cordon");
    assert_eq!(std::fs::read(cluster.agent.kubelet_path()).expect("kubelet"), original, "nothing changed on the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skew_rule_uses_the_api_server_version() {
    let cluster = Cluster::start("v1.30.9", vec![]).await;
    let mut operator = cluster.client("operator").await;
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.31.0", true);
    let refused = post(&mut operator, "/v1/upgrades", upgrade_body("v1.31.0", &artifact, None)).await;
    assert_eq!(refused.status, 422, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["details"][0]["code"], "skew");

    // A claimed control-plane version newer than the API server's answer does
    // not lift the rule; only an admin's force does, recorded as a risk.
    let mut claimed = upgrade_body("v1.31.0", &artifact, None);
    claimed["control_plane_version"] = "v1.31.2".into();
    let refused = post(&mut operator, "/v1/upgrades", claimed.clone()).await;
    assert_eq!(refused.status, 422, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["details"][0]["field"], "control_plane_version");
    assert_eq!(refused.json()["error"]["details"][0]["code"], "newer_than_api_server");
    let mut admin = cluster.client("admin").await;
    claimed["force"] = true.into();
    claimed["dry_run"] = true.into();
    let forced = run(&mut admin, "/v1/upgrades", claimed).await;
    let risks: Vec<&str> =
        forced["accepted_risks"].as_array().expect("risks").iter().filter_map(|r| r["code"].as_str()).collect();
    assert_eq!(risks, ["control_plane_claim"], "{forced:#}");
}

/// Polls `GET /v1/node` until `accept` holds for it; panics after [`WITHIN`].
async fn wait_for_node_state(
    client: &mut ApiClient,
    what: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let state = client.get("/v1/node").await.expect("reply").json();
        if accept(&state) {
            return state;
        }
        assert!(std::time::Instant::now() < deadline, "the node never showed {what}: {state:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn available(state: &serde_json::Value) -> serde_json::Value {
    state["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Available"))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cordoned_by_someone_else_is_reported_cordoned_and_unavailable() {
    let cluster = Cluster::start("v1.30.2", vec![]).await;
    let mut reader = cluster.client("reader").await;
    let ready = wait_for_node_state(&mut reader, "Available", |s| available(s)["status"] == "True").await;
    assert_eq!(ready["cordoned"], false);

    cluster.api.state().set_unschedulable("worker-1", true);
    let cordoned = wait_for_node_state(&mut reader, "cordoned", |s| s["cordoned"] == true).await;
    assert_eq!(available(&cordoned)["status"], "False", "{cordoned:#}");
    assert_eq!(available(&cordoned)["reason"], "Cordoned");

    cluster.api.state().set_unschedulable("worker-1", false);
    cluster.api.state().set_ready("worker-1", "Unknown", chrono::Utc::now());
    let not_ready = wait_for_node_state(&mut reader, "not Ready", |s| available(s)["reason"] == "NodeNotReady").await;
    assert_eq!(not_ready["cordoned"], false);
    assert_eq!(available(&not_ready)["status"], "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postcheck_waits_for_the_node_to_report_the_new_kubelet() {
    let cluster = Cluster::start("v1.30.9", vec![]).await;
    let mut operator = cluster.client("operator").await;
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    let postcheck = &operation["steps"][6];
    assert!(
        postcheck["message"].as_str().is_some_and(|m| m.contains("the Node reports the new kubelet")),
        "{postcheck}"
    );
    assert_eq!(cluster.node()["status"]["nodeInfo"]["kubeletVersion"], "v1.30.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reports_the_new_kubelet_rolls_the_upgrade_back() {
    let cluster = Cluster::start_with("v1.30.9", vec![], KubeletReports::Nothing).await;
    let mut operator = cluster.client("operator").await;
    let original = std::fs::read(cluster.agent.kubelet_path()).expect("kubelet");
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    let detail = &operation["errors"][0]["details"][0];
    assert_eq!(detail["field"], "PostCheck");
    assert_eq!(detail["code"], "node_not_updated");
    assert!(detail["message"].as_str().is_some_and(|m| m.contains("kubelet v1.30.2")), "{detail}");
    assert_eq!(std::fs::read(cluster.agent.kubelet_path()).expect("kubelet"), original, "the old kubelet is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_from_before_the_restart_proves_nothing() {
    let cluster = Cluster::start_with("v1.30.9", vec![], KubeletReports::StaleHeartbeat).await;
    let mut operator = cluster.client("operator").await;
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    // The simulated kubelet's first heartbeat is whole seconds old before the restart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    let detail = &operation["errors"][0]["details"][0];
    assert_eq!(detail["code"], "node_not_updated");
    assert!(detail["message"].as_str().is_some_and(|m| m.contains("older than the restart")), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_cordon_survives_a_later_upgrade() {
    let cluster = Cluster::start("v1.30.9", vec![]).await;
    let mut operator = cluster.client("operator").await;
    let cordon = run(&mut operator, "/v1/cordon", serde_json::json!({})).await;
    assert_eq!(cordon["phase"], "Succeeded", "{cordon:#}");
    let artifact = kubelet_artifact(cluster.dir.path(), "v1.30.3", true);
    let operation = run(&mut operator, "/v1/upgrades", upgrade_body("v1.30.3", &artifact, None)).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    let node = cluster.node();
    assert_eq!(node["spec"]["unschedulable"], true, "the explicit cordon stays: {node}");
    assert_eq!(node["metadata"]["annotations"]["upkeep.io/cordoned-by"], cordon["id"]);
    assert_eq!(operator.get("/v1/node").await.expect("reply").json()["cordoned"], true);

    let uncordon = run(&mut operator, "/v1/uncordon", serde_json::json!({})).await;
    assert_eq!(uncordon["phase"], "Succeeded", "{uncordon:#}");
    assert_eq!(cluster.node()["spec"]["unschedulable"], false, "an explicit uncordon lifts it");
}
