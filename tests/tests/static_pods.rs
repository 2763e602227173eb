//! Static-pod upgrades through a real agent process: a stand-in kubelet runs
//! every non-hidden file of a real manifest directory, reports each container
//! through the fake API server and serves the API server's `/readyz` and
//! `/version` over TLS for the image it runs. The manifest changes only where
//! the release says, a crash-looping image is rolled back byte for byte, an
//! image that cannot be pulled changes nothing, a kill at any step boundary
//! leaves whole manifests, and no stray file ever appears in the directory.

use std::time::Duration;

use serde_json::json;
use upkeep_simulator::kube_api::FakeApiServer;
use upkeep_tests::agent_process::{AgentProcess, AgentSetup};
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::pki::Pki;
use upkeep_tests::static_pod_node::{
    OLD_API, OLD_ETCD, StaticPodNode, etcd_manifest, files_in, kubernetes_keys, new_api_server, pinned,
};
use upkeep_tests::upgrades::{step_statuses, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);
const NODE: &str = "cp-1";

struct ControlPlane {
    pods: StaticPodNode,
    _api: FakeApiServer,
    pki: Pki,
    agent: Option<AgentProcess>,
}

impl ControlPlane {
    async fn start(crash_looping: &[&str]) -> ControlPlane {
        let api = FakeApiServer::start("v1.30.2").await.expect("fake API server");
        api.state().add_node(NODE);
        let pods = StaticPodNode::start(&api, NODE, crash_looping).await;
        let extra = format!(
            "[probe]\ninterval_secs = 1\n\n{}\n[timeouts]\npostcheck_secs = 6\n\n{}",
            kubernetes_keys(&api, pods.dir.path()),
            pods.component_keys()
        );
        let setup = AgentSetup { extra, node_name: NODE.to_owned(), ..AgentSetup::kubelet("v1.30.2") };
        let pki = Pki::new();
        let agent = AgentProcess::start_with(&pki, &setup);
        ControlPlane { pods, _api: api, pki, agent: Some(agent) }
    }

    fn agent(&self) -> &AgentProcess {
        self.agent.as_ref().expect("an agent runs")
    }

    /// Kills the agent and starts it again on the same directory with `env`.
    fn restart_agent(&mut self, env: &[(&str, &str)]) {
        let agent = self.agent.take().expect("an agent runs");
        self.agent = Some(agent.restart(env));
    }

    async fn client(&self) -> ApiClient {
        let config = client_config(&self.pki.ca_cert(), Some(&self.pki.client("operator")));
        ApiClient::connect(self.agent().addr, config).await.expect("connects")
    }

    fn manifest(&self, name: &str) -> String {
        self.pods.manifest(name)
    }

    /// Every file in the manifest directory, hidden ones included.
    fn manifest_files(&self) -> Vec<String> {
        files_in(&self.pods.manifests())
    }

    /// Waits until the stand-in kubelet runs `image` for `pod`, Ready.
    async fn wait_running(&self, pod: &str, image: &str) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let running = self.pods.kubelet.pods().get(pod).cloned();
            if running.as_ref().is_some_and(|p| p.image == image && p.ready) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{pod} never ran {image}: {running:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn upgrade(api_image: &str, etcd_image: &str) -> String {
    json!({
        "target_version": "v1.31.0",
        "request_token": "cp-upgrade-1",
        "images": [
            {"component": "kube-apiserver", "image": api_image, "remove_flags": ["--insecure-port"]},
            {"component": "etcd", "image": etcd_image},
        ],
    })
    .to_string()
}

async fn run_upgrade(plane: &ControlPlane, body: &str) -> serde_json::Value {
    let mut client = plane.client().await;
    let reply = client.post_json("/v1/upgrades", body).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    wait_for_end(&mut client, reply.json()["id"].as_str().expect("id"), WITHIN).await
}

const EXPECTED_FILES: [&str; 2] = ["etcd.yaml", "kube-apiserver.yaml"];

#[tokio::test]
async fn an_upgrade_changes_the_image_and_the_removed_flag_only_and_each_pod_runs_before_the_next() {
    let plane = ControlPlane::start(&[]).await;
    plane.wait_running("kube-apiserver", OLD_API).await;
    let api_image = pinned("registry.k8s.io/kube-apiserver", "v1.31.0", 'a');
    let etcd_image = pinned("registry.k8s.io/etcd", "3.5.15-0", 'b');
    let operation = run_upgrade(&plane, &upgrade(&api_image, &etcd_image)).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}\n{}", plane.agent().log());
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
    assert_eq!(plane.manifest("kube-apiserver"), new_api_server(&api_image));
    assert_eq!(plane.manifest("etcd"), etcd_manifest(&etcd_image));
    let swap = operation["steps"][4]["message"].as_str().expect("message");
    let etcd_ran = swap.find("etcd: kubelet runs its manifest's container").expect("etcd waited for");
    let api_swapped = swap.find("kube-apiserver: swapped").expect("API server swapped");
    assert!(etcd_ran < api_swapped, "etcd runs before the API server is touched: {swap}");
    let pods = plane.pods.kubelet.pods();
    assert!(pods["etcd"].ready && pods["etcd"].image == etcd_image, "{pods:?}");
    assert!(pods["kube-apiserver"].ready && pods["kube-apiserver"].image == api_image, "{pods:?}");
    assert_eq!(plane.manifest_files(), EXPECTED_FILES, "nothing else ever lands in the manifest directory");
    let pulls = plane.pods.pulls();
    assert!(pulls.contains(&api_image) && pulls.contains(&etcd_image), "{pulls}");

    let mut client = plane.client().await;
    let node = client.get("/v1/node").await.expect("reply").json();
    assert_eq!(node["history"].as_array().map(Vec::len), Some(1), "{node:#}");
    let version = |name: &str| {
        node["components"].as_array().expect("components").iter().find(|c| c["name"] == name).expect("component")
            ["observed_version"]
            .clone()
    };
    assert_eq!(version("kube-apiserver"), "v1.31.0");
    assert_eq!(version("etcd"), "3.5.15-0");
    let health = client.get("/v1/static-pods").await.expect("reply").json();
    let reported: Vec<(&str, &str, bool)> = health["static_pods"]
        .as_array()
        .expect("static pods")
        .iter()
        .map(|pod| {
            (pod["component"].as_str().unwrap_or(""), pod["image"].as_str().unwrap_or(""), pod["healthy"] == true)
        })
        .collect();
    assert_eq!(reported, [("etcd", etcd_image.as_str(), true), ("kube-apiserver", api_image.as_str(), true)]);

    // An admin's rollback puts the kept manifests back, byte for byte, and waits for the old pods.
    let admin = client_config(&plane.pki.ca_cert(), Some(&plane.pki.client("admin")));
    let mut admin = ApiClient::connect(plane.agent().addr, admin).await.expect("connects");
    let reply = admin.post_json("/v1/rollback", "{}").await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    let rollback = wait_for_end(&mut admin, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(rollback["phase"], "Succeeded", "{rollback:#}");
    assert_eq!(plane.manifest("kube-apiserver"), upkeep_tests::static_pod_node::old_api_server());
    assert_eq!(plane.manifest("etcd"), etcd_manifest(OLD_ETCD));
    let pods = plane.pods.kubelet.pods();
    assert!(pods["kube-apiserver"].ready && pods["kube-apiserver"].image == OLD_API, "{pods:?}");
    assert_eq!(plane.manifest_files(), EXPECTED_FILES);
}

#[tokio::test]
async fn a_crash_looping_image_is_rolled_back_to_the_old_manifest_byte_for_byte() {
    let plane = ControlPlane::start(&["crashloop"]).await;
    plane.wait_running("kube-apiserver", OLD_API).await;
    let (etcd_before, api_before) = (plane.manifest("etcd"), plane.manifest("kube-apiserver"));
    let api_image = pinned("registry.k8s.io/kube-apiserver", "v1.31.0-crashloop", 'c');
    let operation = run_upgrade(&plane, &upgrade(&api_image, &pinned("registry.k8s.io/etcd", "3.5.15-0", 'b'))).await;
    assert_eq!(operation["phase"], "RolledBack", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "static_pod_not_running", "{operation:#}");
    assert_eq!(plane.manifest("kube-apiserver"), api_before);
    assert_eq!(plane.manifest("etcd"), etcd_before, "etcd, swapped first, goes back too");
    plane.wait_running("kube-apiserver", OLD_API).await;
    plane.wait_running("etcd", OLD_ETCD).await;
    assert_eq!(plane.manifest_files(), EXPECTED_FILES);
    let mut client = plane.client().await;
    let node = client.get("/v1/node").await.expect("reply").json();
    assert_eq!(node["phase"], "Degraded", "{node:#}");
    let health = client.get("/v1/static-pods").await.expect("reply").json();
    let pods = health["static_pods"].as_array().expect("static pods");
    assert!(pods.iter().all(|pod| pod["healthy"] == true), "the old pods run again: {health:#}");
    assert_eq!(pods[1]["image"], OLD_API);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_changes_nothing() {
    let plane = ControlPlane::start(&[]).await;
    let (etcd_before, api_before) = (plane.manifest("etcd"), plane.manifest("kube-apiserver"));
    let api_image = pinned("registry.k8s.io/kube-apiserver", "v1.31.0-unpullable", 'd');
    let operation = run_upgrade(&plane, &upgrade(&api_image, &pinned("registry.k8s.io/etcd", "3.5.15-0", 'b'))).await;
    assert_eq!(operation["phase"], "Failed", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "image_pull_failed", "{operation:#}");
    assert_eq!((plane.manifest("etcd"), plane.manifest("kube-apiserver")), (etcd_before, api_before));
    assert_eq!(plane.manifest_files(), EXPECTED_FILES);
    let staged = files_in(&plane.pods.dir.path().join("upkeep-staged"));
    assert!(staged.iter().all(|name| !name.ends_with(".partial")), "{staged:?}");
}

// Two workers: waiting for the killed process blocks one, while the fake API
// server and the stand-in kubelet keep serving on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_every_step_boundary_leaves_whole_manifests_and_the_state_says_which() {
    let api_image = pinned("registry.k8s.io/kube-apiserver", "v1.31.0", 'a');
    let etcd_image = pinned("registry.k8s.io/etcd", "3.5.15-0", 'b');
    for point in [
        "before:Stage",
        "stage:kube-apiserver",
        "before:Swap",
        "swap:backup:etcd",
        "swap:rename:etcd",
        "swap:rename:kube-apiserver",
        "before:PostCheck",
        "before:Uncordon",
    ] {
        let mut plane = ControlPlane::start(&[]).await;
        let old = (plane.manifest("etcd"), plane.manifest("kube-apiserver"));
        let new = (etcd_manifest(&etcd_image), new_api_server(&api_image));
        plane.restart_agent(&[("UPKEEP_CRASH_AT", point)]);
        let mut client = plane.client().await;
        let reply = client.post_json("/v1/upgrades", &upgrade(&api_image, &etcd_image)).await.expect("reply");
        assert_eq!(reply.status, 202, "{point}: {}", String::from_utf8_lossy(&reply.body));
        let id = reply.json()["id"].as_str().expect("id").to_owned();
        let agent = plane.agent.as_mut().expect("an agent runs");
        assert!(agent.wait_exit(WITHIN).is_some(), "{point} was never reached:\n{}", agent.log());
        for (name, (old, new)) in [("etcd", (&old.0, &new.0)), ("kube-apiserver", (&old.1, &new.1))] {
            let now = plane.manifest(name);
            assert!(&now == old || &now == new, "{point}: {name} is neither old nor new:\n{now}");
        }
        assert_eq!(plane.manifest_files(), EXPECTED_FILES, "{point}");

        plane.restart_agent(&[]);
        let mut client = plane.client().await;
        let operation = wait_for_end(&mut client, &id, WITHIN).await;
        let expected = match operation["phase"].as_str() {
            Some("Succeeded") => &new,
            Some("RolledBack" | "Failed") => &old,
            other => panic!("{point}: ended {other:?}: {operation:#}"),
        };
        assert_eq!(&(plane.manifest("etcd"), plane.manifest("kube-apiserver")), expected, "{point}: {operation:#}");
        assert_eq!(plane.manifest_files(), EXPECTED_FILES, "{point}");
    }
}
