//! One control-plane node's static pods for tests: a real manifest directory
//! holding etcd and kube-apiserver (and, when asked, kube-controller-manager
//! and kube-scheduler) as kubeadm writes them, a pull command that
//! logs (and refuses images tagged `unpullable`), a stand-in kubelet running
//! the directory and reporting through a fake API server, and the agent
//! config keys that manage them.

use std::path::{Path, PathBuf};

use upkeep_simulator::kube_api::{FakeApiServer, StaticPodKubelet};

use crate::fake_kubelet;

/// etcd's image before any upgrade (a tag, as kubeadm writes it).
pub const OLD_ETCD: &str = "registry.k8s.io/etcd:3.5.12-0";
/// kube-apiserver's image before any upgrade.
pub const OLD_API: &str = "registry.k8s.io/kube-apiserver:v1.30.2";

/// An image of `repository` at `tag`, pinned by a digest of one repeated hex digit.
pub fn pinned(repository: &str, tag: &str, digit: char) -> String {
    format!("{repository}:{tag}@sha256:{}", digit.to_string().repeat(64))
}

pub use upkeep_simulator::static_pods::manifest;

/// etcd's manifest with `image`.
pub fn etcd_manifest(image: &str) -> String {
    manifest("etcd", image, &["--data-dir=/var/lib/etcd"])
}

/// kube-apiserver's manifest before any upgrade.
pub fn old_api_server() -> String {
    manifest(
        "kube-apiserver",
        OLD_API,
        &["--advertise-address=10.0.0.1", "--insecure-port=0", "--allow-privileged=true"],
    )
}

/// kube-apiserver's manifest after an upgrade to `image` that removed `--insecure-port`.
pub fn new_api_server(image: &str) -> String {
    old_api_server().replace("    - --insecure-port=0\n", "").replace(OLD_API, image)
}

/// kube-controller-manager's or kube-scheduler's image before any upgrade.
pub fn old_image(component: &str) -> String {
    format!("registry.k8s.io/{component}:v1.30.2")
}

/// The two components kubeadm runs beside etcd and the API server.
pub const CONTROLLERS: [&str; 2] = ["kube-controller-manager", "kube-scheduler"];

/// A node's static pods, run by a stand-in kubelet.
pub struct StaticPodNode {
    /// The stand-in kubelet.
    pub kubelet: StaticPodKubelet,
    /// Holds `manifests/`, the staging directory beside it, the pull script and its log.
    pub dir: tempfile::TempDir,
    /// Whether kube-controller-manager and kube-scheduler are static pods too.
    controllers: bool,
}

impl StaticPodNode {
    /// Writes the manifests and starts the stand-in kubelet of node `node`;
    /// images containing one of `crash_looping` never become Ready.
    pub async fn start(api: &FakeApiServer, node: &str, crash_looping: &[&str]) -> StaticPodNode {
        Self::start_with(api, node, crash_looping, false).await
    }

    /// Like [`StaticPodNode::start`], with kube-controller-manager and
    /// kube-scheduler as static pods too when `controllers` is set.
    pub async fn start_with(
        api: &FakeApiServer,
        node: &str,
        crash_looping: &[&str],
        controllers: bool,
    ) -> StaticPodNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).expect("manifest directory");
        std::fs::write(manifests.join("etcd.yaml"), etcd_manifest(OLD_ETCD)).expect("etcd manifest");
        std::fs::write(manifests.join("kube-apiserver.yaml"), old_api_server()).expect("API server manifest");
        for name in CONTROLLERS.iter().filter(|_| controllers) {
            let text = manifest(name, &old_image(name), &["--kubeconfig=/etc/kubernetes/controller.conf"]);
            std::fs::write(manifests.join(format!("{name}.yaml")), text).expect("manifest");
        }
        let crash_looping = crash_looping.iter().map(|marker| (*marker).to_owned()).collect();
        let kubelet = api.run_static_pods(manifests, node, crash_looping).await.expect("stand-in kubelet");
        std::fs::write(dir.path().join("apiserver-ca.pem"), &kubelet.ca_pem).expect("CA");
        let script = format!(
            "#!/bin/sh\necho \"$1\" >> {log}\ncase \"$1\" in *unpullable*) echo \"manifest unknown\" >&2; exit 1;; esac\n",
            log = dir.path().join("pulls.log").display()
        );
        fake_kubelet::write_script(&dir.path().join("pull.sh"), &script);
        StaticPodNode { kubelet, dir, controllers }
    }

    /// The manifest directory.
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// A manifest's text.
    pub fn manifest(&self, name: &str) -> String {
        std::fs::read_to_string(self.manifests().join(format!("{name}.yaml"))).expect("manifest")
    }

    /// What the pull command logged.
    pub fn pulls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulls.log")).unwrap_or_default()
    }

    /// The `[[components]]` tables of every static pod (kube-apiserver's health
    /// and version read from the stand-in over TLS), each settling for a second.
    pub fn component_keys(&self) -> String {
        self.component_keys_settling(1)
    }

    /// Like [`StaticPodNode::component_keys`], each settling for `settle_secs`.
    pub fn component_keys_settling(&self, settle_secs: u64) -> String {
        let pull = self.dir.path().join("pull.sh");
        let table = |name: &str, more: &str| {
            format!(
                "[[components]]\nname = \"{name}\"\nkind = \"static-pod\"\nmanifest = \"{}\"\npull_command = [\"{}\"]\n\
                 settle_secs = {settle_secs}\n{more}\n",
                self.manifests().join(format!("{name}.yaml")).display(),
                pull.display()
            )
        };
        let checks = format!(
            "health_url = \"https://127.0.0.1:{port}/readyz\"\nhealth_ca = \"{ca}\"\nversion_url = \"https://127.0.0.1:{port}/version\"",
            port = self.kubelet.addr.port(),
            ca = self.dir.path().join("apiserver-ca.pem").display()
        );
        let mut tables = format!("{}\n{}", table("etcd", ""), table("kube-apiserver", &checks));
        for name in CONTROLLERS.iter().filter(|_| self.controllers) {
            tables.push_str(&format!("\n{}", table(name, "")));
        }
        tables
    }
}

/// `[kubernetes]` for an agent of the fake API server, its kubeconfig written in `dir`.
pub fn kubernetes_keys(api: &FakeApiServer, dir: &Path) -> String {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    format!("[kubernetes]\nkubeconfig = \"{}\"\nrequest_timeout_secs = 2\n", kubeconfig.display())
}

/// Every file in `dir`, hidden ones included, sorted (none when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
