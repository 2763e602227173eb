//! A handful of real agent processes on 127.0.0.x addresses, with an inventory
//! and an artifacts file for the `upkeep` CLI.

use std::path::PathBuf;

use tempfile::TempDir;

use crate::agent_process::{AgentProcess, AgentSetup};
use crate::pki::Pki;
use crate::upgrades::Artifact;

/// One node of a test fleet.
pub struct FleetNode {
    /// Its name.
    pub name: String,
    /// `control-plane` or `worker`.
    pub role: &'static str,
    /// Its zone label.
    pub zone: &'static str,
    /// Its agent.
    pub agent: AgentProcess,
}

/// A test fleet.
pub struct Fleet {
    /// The PKI every agent and the coordinator use.
    pub pki: Pki,
    /// The nodes.
    pub nodes: Vec<FleetNode>,
    /// Where the inventory, artifacts and journal are written.
    pub dir: TempDir,
}

impl Fleet {
    /// Starts one agent per `(name, role, zone, setup)`, each on its own 127.0.0.x.
    pub fn start(nodes: Vec<(&str, &'static str, &'static str, AgentSetup)>) -> Fleet {
        let pki = Pki::new();
        let started = nodes
            .into_iter()
            .enumerate()
            .map(|(index, (name, role, zone, mut setup))| {
                setup.listen = format!("127.0.0.{}:0", index + 2);
                setup.node_name = name.to_owned();
                let agent = AgentProcess::start_with(&pki, &setup);
                FleetNode { name: name.to_owned(), role, zone, agent }
            })
            .collect();
        Fleet { pki, nodes: started, dir: tempfile::tempdir().expect("tempdir") }
    }

    /// `count` workers, `worker-1` onwards in zone `a`, each a kubelet at
    /// `version` that restarts and answers its health check on `health_port`.
    pub fn workers(version: &str, health_port: u16, count: usize) -> Fleet {
        let names: Vec<String> = (1..=count).map(|n| format!("worker-{n}")).collect();
        Fleet::start(
            names
                .iter()
                .map(|name| (name.as_str(), "worker", "a", crate::upgrades::setup(version, health_port, "")))
                .collect(),
        )
    }

    /// Writes the inventory (client role `operator`), plus `extra` node entries.
    pub fn write_inventory(&self, extra: &str) -> PathBuf {
        let client = self.pki.client("operator");
        let mut text = format!(
            "ca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            self.pki.ca_cert().display(),
            client.cert.display(),
            client.key.display()
        );
        for node in &self.nodes {
            text.push_str(&format!(
                "\n[[nodes]]\nname = \"{}\"\naddress = \"{}\"\nrole = \"{}\"\nlabels = {{ zone = \"{}\" }}\n",
                node.name, node.agent.addr, node.role, node.zone
            ));
        }
        text.push_str(extra);
        let path = self.dir.path().join("inventory.toml");
        std::fs::write(&path, text).expect("write inventory");
        path
    }

    /// The arguments of `upkeep rollout` to v1.30.3 of a healthy kubelet, with
    /// this fleet's inventory and artifacts file (written now), then `extra`.
    pub fn rollout_args(&self, extra: &[&str]) -> Vec<String> {
        let inventory = self.write_inventory("");
        let artifact = crate::upgrades::kubelet_artifact(self.dir.path(), "v1.30.3", true);
        let artifacts = self.write_artifacts(&artifact);
        let mut args = vec![
            "rollout".to_owned(),
            "--inventory".to_owned(),
            inventory.display().to_string(),
            "--to".to_owned(),
            "v1.30.3".to_owned(),
            "--artifacts".to_owned(),
            artifacts.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    /// The rollout journal's path in the fleet's directory.
    pub fn journal(&self) -> String {
        self.dir.path().join("journal.redb").display().to_string()
    }

    /// Every node's history, as the `reader` client reads it with curl.
    pub fn histories(&self) -> Vec<serde_json::Value> {
        self.nodes
            .iter()
            .map(|node| {
                crate::curl::curl(&self.pki, node.agent.addr, Some("reader"), "/v1/node", &[]).json()["history"].clone()
            })
            .collect()
    }

    /// Writes an artifacts file for the kubelet.
    pub fn write_artifacts(&self, artifact: &Artifact) -> PathBuf {
        let path = self.dir.path().join("artifacts.toml");
        let text = format!(
            "[[artifacts]]\ncomponent = \"kubelet\"\nsource = \"{}\"\nsha256 = \"{}\"\n",
            artifact.url(),
            artifact.sha256
        );
        std::fs::write(&path, text).expect("write artifacts");
        path
    }
}
