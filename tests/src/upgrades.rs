//! Helpers for upgrade tests: artifacts of the fake kubelet, request bodies, an
//! agent set up to restart and health-check its kubelet, and waiting for an
//! operation to end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::agent_process::{AgentProcess, AgentSetup};
use crate::client::{ApiClient, client_config};
use crate::fake_kubelet;
use crate::pki::Pki;

/// An artifact file and its digest.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where it is.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its sha256 (hex).
    pub sha256: String,
}

impl Artifact {
    /// Its `file://` URL.
    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

/// Writes a fake kubelet for `version` into `dir` as an artifact.
pub fn kubelet_artifact(dir: &Path, version: &str, healthy: bool) -> Artifact {
    component_artifact(dir, "kubelet", version, healthy)
}

/// Writes a fake component `name` for `version` into `dir` as an artifact.
pub fn component_artifact(dir: &Path, name: &str, version: &str, healthy: bool) -> Artifact {
    let text = fake_kubelet::script(name, version, healthy);
    let path = dir.join(format!("{name}-{version}-{}", if healthy { "ok" } else { "bad" }));
    fake_kubelet::write_script(&path, &text);
    let bytes = text.into_bytes();
    let sha256 = hex_digest(&bytes);
    Artifact { path, bytes, sha256 }
}

/// The sha256 of bytes, as lowercase hex.
pub fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An agent whose kubelet is restarted by a logged command and health-checked
/// at `health_port`, with `extra` TOML.
pub fn setup(version: &str, health_port: u16, extra: &str) -> AgentSetup {
    AgentSetup {
        kubelet_version: version.to_owned(),
        tls_reload_secs: 0,
        component_extra: format!(
            "restart_command = [\"/bin/sh\", \"-c\", \"echo restart >> {{dir}}/restarts.log\"]\n\
             health_url = \"http://127.0.0.1:{health_port}/healthz?binary={{binary}}\"\n"
        ),
        extra: format!("[timeouts]\npostcheck_secs = 5\n{extra}"),
        ..AgentSetup::default()
    }
}

/// Like [`setup`], with a kubelet restart that takes `seconds` (a `sleep`
/// argument, such as `0.5`): long enough to catch an operation running.
pub fn slow_setup(version: &str, health_port: u16, seconds: &str, extra: &str) -> AgentSetup {
    let mut slow = setup(version, health_port, extra);
    slow.component_extra =
        slow.component_extra.replace("echo restart >>", &format!("sleep {seconds}; echo restart >>"));
    slow
}

/// A real agent process set up by [`setup`], its PKI, and a directory for
/// artifacts (inside the agent's file root).
pub struct UpgradeNode {
    /// The CA and certificates.
    pub pki: Pki,
    /// The agent.
    pub agent: AgentProcess,
    /// Where artifacts are written.
    pub artifacts: tempfile::TempDir,
}

impl UpgradeNode {
    /// An agent with a kubelet at `version`, health-checked by a fresh health
    /// server, with `extra` TOML.
    pub async fn start(version: &str, extra: &str) -> UpgradeNode {
        let port = fake_kubelet::start_health_server().await;
        Self::start_with(&setup(version, port, extra))
    }

    /// An agent set up as `setup` says.
    pub fn start_with(setup: &AgentSetup) -> UpgradeNode {
        let pki = Pki::new();
        let agent = AgentProcess::start_with(&pki, setup);
        UpgradeNode { pki, agent, artifacts: tempfile::tempdir().expect("tempdir") }
    }

    /// A client with the certificate of `role`.
    pub async fn client(&self, role: &str) -> ApiClient {
        ApiClient::connect(self.agent.addr, client_config(&self.pki.ca_cert(), Some(&self.pki.client(role))))
            .await
            .expect("connects")
    }

    /// A kubelet artifact for `version` in the artifacts directory.
    pub fn artifact(&self, version: &str, healthy: bool) -> Artifact {
        kubelet_artifact(self.artifacts.path(), version, healthy)
    }

    /// The installed kubelet's bytes.
    pub fn installed(&self) -> Vec<u8> {
        std::fs::read(self.agent.kubelet_path()).expect("installed kubelet")
    }

    /// How many times the kubelet was restarted.
    pub fn restarts(&self) -> usize {
        std::fs::read_to_string(self.agent.dir().join("restarts.log")).map(|t| t.lines().count()).unwrap_or(0)
    }
}

/// A `POST /v1/upgrades` body for the kubelet.
pub fn upgrade_body(target: &str, artifact: &Artifact, token: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "target_version": target,
        "artifacts": [{"component": "kubelet", "source": artifact.url(), "sha256": artifact.sha256}],
    });
    if let Some(token) = token {
        body["request_token"] = serde_json::Value::from(token);
    }
    body
}

/// Polls an operation every 50 ms until it ends; panics after `within`.
pub async fn wait_for_end(client: &mut ApiClient, id: &str, within: Duration) -> serde_json::Value {
    wait_for_end_every(client, id, within, Duration::from_millis(50)).await
}

/// Polls an operation every `interval` until it ends; panics after `within`.
pub async fn wait_for_end_every(
    client: &mut ApiClient,
    id: &str,
    within: Duration,
    interval: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = client.get(&format!("/v1/operations/{id}")).await.expect("reply");
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let operation = reply.json();
        let phase = operation["phase"].as_str().unwrap_or_default().to_owned();
        if !matches!(phase.as_str(), "Pending" | "Running") {
            return operation;
        }
        assert!(Instant::now() < deadline, "operation {id} still {phase} after {within:?}: {operation:#}");
        tokio::time::sleep(interval).await;
    }
}

/// Polls an operation until its step `step` has status `status`.
pub async fn wait_for_step(client: &mut ApiClient, id: &str, step: &str, status: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let operation = client.get(&format!("/v1/operations/{id}")).await.expect("reply").json();
        let reached = operation["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["name"] == step && s["status"] == status));
        if reached {
            return;
        }
        assert!(Instant::now() < deadline, "step {step} never became {status}: {operation:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each step's status, in order, as "Name:Status".
pub fn step_statuses(operation: &serde_json::Value) -> Vec<String> {
    operation["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| format!("{}:{}", s["name"].as_str().unwrap_or("?"), s["status"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default()
}
