//! A rollout of a kubeadm-style control plane with the `upkeep` CLI: two
//! control-plane nodes whose etcd and kube-apiserver are static pods (run by
//! stand-in kubelets on real manifest directories, reported through one fake
//! API server that answers the oldest API server's version), a real etcd,
//! and a worker. The etcd snapshot comes first, then each control-plane
//! node's static pods, node after node, then the control-plane kubelets, then
//! the worker: the agents' own operation times show the order, and the
//! kubelets' skew check against the oldest API server would refuse any
//! kubelet that came too early. A snapshot that cannot be taken changes nothing.

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use serde_json::Value;
use upkeep_simulator::kube_api::{FakeApiServer, KubeletReports, SimulatedKubelet};
use upkeep_tests::binaries;
use upkeep_tests::curl::curl;
use upkeep_tests::etcd::Etcd;
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::fleet::Fleet;
use upkeep_tests::static_pod_node::{
    OLD_ETCD, StaticPodNode, etcd_manifest, kubernetes_keys, new_api_server, old_api_server, pinned,
};
use upkeep_tests::upgrades::{kubelet_artifact, setup};

const CONTROL_PLANE: [&str; 2] = ["cp-1", "cp-2"];

struct Cluster {
    fleet: Fleet,
    pods: Vec<StaticPodNode>,
    etcd: Etcd,
    _kubelets: Vec<SimulatedKubelet>,
    _api: FakeApiServer,
}

fn api_image() -> String {
    pinned("registry.k8s.io/kube-apiserver", "v1.31.0", 'a')
}

fn etcd_image() -> String {
    pinned("registry.k8s.io/etcd", "3.5.15-0", 'b')
}

impl Cluster {
    async fn start() -> Cluster {
        let api = FakeApiServer::start("v1.30.2").await.expect("fake API server");
        let etcd = Etcd::start().await;
        let health_port = start_health_server().await;
        let mut pods = Vec::new();
        let mut nodes = Vec::new();
        for name in CONTROL_PLANE {
            api.state().add_node(name);
            let node = StaticPodNode::start(&api, name, &[]).await;
            let extra = format!(
                "{}\n{}\n{}",
                kubernetes_keys(&api, node.dir.path()),
                etcd.config_table(&etcd.client_files(), ""),
                node.component_keys()
            );
            nodes.push((name, "control-plane", "a", setup("v1.30.2", health_port, &extra)));
            pods.push(node);
        }
        nodes.push(("worker-1", "worker", "a", setup("v1.30.2", health_port, "")));
        let fleet = Fleet::start(nodes);
        let kubelets = fleet.nodes[..2]
            .iter()
            .map(|node| {
                let log = node.agent.dir().join("restarts.log");
                api.simulate_kubelet(&node.name, node.agent.kubelet_path(), log, KubeletReports::VersionAndHeartbeat)
            })
            .collect();
        Cluster { fleet, pods, etcd, _kubelets: kubelets, _api: api }
    }

    /// `upkeep rollout --to 1.31` from a catalog with the kubelet and both images.
    fn rollout(&self) -> Output {
        let dir = self.fleet.dir.path();
        let kubelet = kubelet_artifact(dir, "v1.31.0", true);
        let catalog = format!(
            "channel = \"stable\"\n\n[[releases]]\nversion = \"1.31.0\"\nchannels = [\"stable\"]\n\
             [[releases.artifacts]]\ncomponent = \"kubelet\"\narch = \"{arch}\"\nsource = \"{source}\"\nsha256 = \"{sha256}\"\n\
             [[releases.images]]\ncomponent = \"kube-apiserver\"\nimage = \"{api}\"\nremove_flags = [\"--insecure-port\"]\n\
             [[releases.images]]\ncomponent = \"etcd\"\nimage = \"{etcd}\"\n",
            arch = upkeep_common::api::kubernetes_arch(),
            source = kubelet.url(),
            sha256 = kubelet.sha256,
            api = api_image(),
            etcd = etcd_image(),
        );
        let catalog_path = dir.join("releases.toml");
        std::fs::write(&catalog_path, catalog).expect("catalog");
        let inventory = self.fleet.write_inventory("");
        Command::new(binaries::path("upkeep"))
            .args(["rollout", "--inventory"])
            .arg(&inventory)
            .args(["--to", "1.31", "--catalog"])
            .arg(&catalog_path)
            .args(["--journal", &self.fleet.journal(), "--max-unavailable", "1"])
            .output()
            .expect("upkeep runs")
    }

    /// The operations of node `index`, as its agent reports them.
    fn operations(&self, index: usize) -> Vec<Value> {
        let node = &self.fleet.nodes[index];
        let reply = curl(&self.fleet.pki, node.agent.addr, Some("reader"), "/v1/operations", &[]);
        reply.json()["operations"].as_array().cloned().unwrap_or_default()
    }
}

fn time(operation: &Value, field: &str) -> DateTime<Utc> {
    operation[field].as_str().and_then(|text| text.parse().ok()).unwrap_or_else(|| panic!("{field}: {operation:#}"))
}

/// The node's upgrade whose request token ends with `suffix`.
fn with_token<'a>(operations: &'a [Value], suffix: &str) -> &'a Value {
    operations
        .iter()
        .find(|op| op["request_token"].as_str().is_some_and(|token| token.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no operation with a token ending {suffix:?}: {operations:#?}"))
}

fn show(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_go_node_after_node_after_an_etcd_snapshot_and_before_any_kubelet() {
    let cluster = Cluster::start().await;
    let output = tokio::task::block_in_place(|| cluster.rollout());
    assert!(output.status.success(), "{}", show(&output));

    let snapshots = cluster.fleet.nodes[0].agent.dir().join("state").join("etcd-snapshots");
    let taken: Vec<_> = std::fs::read_dir(&snapshots).expect("snapshots").flatten().collect();
    assert_eq!(taken.len(), 1, "one snapshot, on the first control-plane node: {taken:?}");
    let journal = std::fs::read(cluster.fleet.journal()).expect("journal");
    let name = taken[0].file_name().to_string_lossy().into_owned();
    assert!(journal.windows(name.len()).any(|w| w == name.as_bytes()), "the journal records {name}");

    for pods in &cluster.pods {
        assert_eq!(pods.manifest("kube-apiserver"), new_api_server(&api_image()));
        assert_eq!(pods.manifest("etcd"), etcd_manifest(&etcd_image()));
    }
    let [cp1, cp2, worker] = [0, 1, 2].map(|index| cluster.operations(index));
    let (static1, static2) = (with_token(&cp1, ":static-pods"), with_token(&cp2, ":static-pods"));
    let (kubelet1, kubelet2) = (with_token(&cp1, ":cp-1"), with_token(&cp2, ":cp-2"));
    let worker_kubelet = with_token(&worker, ":worker-1");
    for operation in [static1, static2, kubelet1, kubelet2, worker_kubelet] {
        assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
    }
    assert!(time(static1, "finished_at") <= time(static2, "created_at"), "cp-1's static pods end before cp-2's start");
    let static_done = time(static2, "finished_at");
    for kubelet in [kubelet1, kubelet2, worker_kubelet] {
        assert!(static_done <= time(kubelet, "created_at"), "no kubelet before every static pod: {kubelet:#}");
    }
    let control_plane_done = time(kubelet1, "finished_at").max(time(kubelet2, "finished_at"));
    assert!(control_plane_done <= time(worker_kubelet, "created_at"), "the worker after the control plane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_taken_stops_the_rollout_before_any_change() {
    let mut cluster = Cluster::start().await;
    cluster.etcd.stop();
    let output = tokio::task::block_in_place(|| cluster.rollout());
    assert!(!output.status.success(), "{}", show(&output));
    assert!(show(&output).contains("no etcd snapshot"), "{}", show(&output));
    for pods in &cluster.pods {
        assert_eq!(pods.manifest("kube-apiserver"), old_api_server());
        assert_eq!(pods.manifest("etcd"), etcd_manifest(OLD_ETCD));
        assert!(pods.pulls().is_empty(), "nothing was even staged");
    }
    for index in 0..3 {
        assert!(cluster.operations(index).is_empty(), "node {index} was never asked to change");
    }
}
