//! One kubeadm control-plane node's upgrade with zero artificial delay: a real
//! agent process upgrades its four static pods (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, run by a stand-in kubelet that looks
//! at its manifest directory every 50 ms; settle time 0) and its kubelet (a
//! fake binary restarted by a command, the Node's version posted by a simulated
//! kubelet) in one operation, from the request until the operation has ended.
//! Each static pod is swapped only once the one before it runs Ready. Prints the
//! median and the spread.
//!
//! Run: `cargo bench -p upkeep-benches --bench control_plane_node`
//! (`UPKEEP_BENCH_ROUNDS` changes the number of rounds, 10 by default).

use std::time::{Duration, Instant};

use serde_json::json;
use upkeep_simulator::kube_api::{FakeApiServer, KubeletReports};
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::pki::Pki;
use upkeep_tests::static_pod_node::{StaticPodNode, kubernetes_keys};
use upkeep_tests::upgrades::{kubelet_artifact, setup, wait_for_end_every};

/// How often the operation is polled: the figures are accurate to about this much.
const POLL: Duration = Duration::from_millis(2);
const NODE: &str = "cp-1";

/// The request of round `round`: every component to the next patch, each
/// image pinned by a digest of its own.
fn request(round: usize, kubelet: &upkeep_tests::upgrades::Artifact) -> String {
    let patch = round + 3;
    let image = |repository: &str, tag: String, salt: usize| {
        format!("registry.k8s.io/{repository}:{tag}@sha256:{:064x}", round * 4 + salt + 1)
    };
    json!({
        "target_version": format!("v1.30.{patch}"),
        "artifacts": [{"component": "kubelet", "source": kubelet.url(), "sha256": kubelet.sha256}],
        "images": [
            {"component": "etcd", "image": image("etcd", format!("3.5.{}-0", 12 + patch), 0)},
            {"component": "kube-apiserver", "image": image("kube-apiserver", format!("v1.30.{patch}"), 1)},
            {"component": "kube-controller-manager", "image": image("kube-controller-manager", format!("v1.30.{patch}"), 2)},
            {"component": "kube-scheduler", "image": image("kube-scheduler", format!("v1.30.{patch}"), 3)},
        ],
    })
    .to_string()
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let rounds: usize = std::env::var("UPKEEP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let samples = runtime.block_on(async {
        let api = FakeApiServer::start("v1.30.2").await.expect("fake API server");
        api.state().add_node(NODE);
        let pods = StaticPodNode::start_with(&api, NODE, &[], true).await;
        let health_port = start_health_server().await;
        let extra = format!("{}\n{}", kubernetes_keys(&api, pods.dir.path()), pods.component_keys_settling(0));
        let mut node_setup = setup("v1.30.2", health_port, &extra);
        node_setup.node_name = NODE.to_owned();
        let pki = Pki::new();
        let agent = AgentProcess::start_with(&pki, &node_setup);
        let _kubelet = api.simulate_kubelet(
            NODE,
            agent.kubelet_path(),
            agent.dir().join("restarts.log"),
            KubeletReports::VersionAndHeartbeat,
        );
        let config = client_config(&pki.ca_cert(), Some(&pki.client("operator")));
        let mut client = ApiClient::connect(agent.addr, config).await.expect("connects");
        let artifacts = tempfile::tempdir().expect("tempdir");
        let mut samples = Vec::new();
        for round in 0..rounds {
            let kubelet = kubelet_artifact(artifacts.path(), &format!("v1.30.{}", round + 3), true);
            let started = Instant::now();
            let reply = client.post_json("/v1/upgrades", &request(round, &kubelet)).await.expect("reply");
            assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
            let id = reply.json()["id"].as_str().expect("id").to_owned();
            let operation = wait_for_end_every(&mut client, &id, Duration::from_secs(120), POLL).await;
            samples.push(started.elapsed());
            assert_eq!(operation["phase"], "Succeeded", "{operation:#}\n{}", agent.log());
        }
        samples
    });
    println!(
        "control-plane node upgrade (4 static pods + kubelet, zero delay): {}",
        upkeep_benches::duration_summary(samples)
    );
}
