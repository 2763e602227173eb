//! A real `upkeep serve` process over a test fleet: its config, release
//! catalog and state directory written beside the fleet, its server
//! certificate from the fleet's PKI, stderr captured, killed on drop. The same
//! files can be served again after a kill, as a restarted service would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::binaries;
use crate::fleet::Fleet;
use crate::listening::{Listening, spawn_listening};
use crate::upgrades::Artifact;

/// The files of a service: its config, catalog and state directory.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    /// The config file.
    pub config: PathBuf,
    /// The release catalog.
    pub catalog: PathBuf,
    /// The state directory (the embedded store).
    pub state: PathBuf,
}

/// One `[[releases]]` entry of a catalog whose kubelet for amd64 is `artifact`.
pub fn release(version: &str, channels: &[&str], artifact: &Artifact, risks: &[(&str, &str)]) -> String {
    let channels: Vec<String> = channels.iter().map(|c| format!("{c:?}")).collect();
    let mut text = format!(
        "\n[[releases]]\nversion = {version:?}\nchannels = [{}]\n[[releases.artifacts]]\ncomponent = \"kubelet\"\narch = \"amd64\"\nsource = {:?}\nsha256 = {:?}\n",
        channels.join(", "),
        artifact.url(),
        artifact.sha256
    );
    for (name, message) in risks {
        text.push_str(&format!("[[releases.risks]]\nname = {name:?}\nmessage = {message:?}\n"));
    }
    text
}

/// Writes a service config for `fleet` as cluster `cluster`, following channel
/// `stable` of a catalog of `releases`, with `policy` as the body of
/// `[clusters.policy]` and `extra_nodes` appended to the inventory.
pub fn write_service(fleet: &Fleet, cluster: &str, releases: &str, policy: &str, extra_nodes: &str) -> ServiceFiles {
    let dir = fleet.dir.path();
    let inventory = fleet.write_inventory(extra_nodes);
    let catalog = dir.join("releases.toml");
    std::fs::write(&catalog, format!("channel = \"stable\"\n{releases}")).expect("write catalog");
    let state = dir.join("service-state");
    let config = dir.join("coordinator.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = {:?}\n\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\n\
         [store]\nkind = \"embedded\"\n\n[[clusters]]\nname = {cluster:?}\ninventory = [{:?}]\ncatalog = {:?}\n\
         [clusters.policy]\n{policy}\n",
        state.display().to_string(),
        fleet.pki.file("node.crt").display().to_string(),
        fleet.pki.file("node.key").display().to_string(),
        fleet.pki.ca_cert().display().to_string(),
        inventory.display().to_string(),
        catalog.display().to_string(),
    );
    std::fs::write(&config, text).expect("write service config");
    ServiceFiles { config, catalog, state }
}

/// A running `upkeep serve`.
pub struct ServiceProcess {
    process: Listening,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServiceProcess {
    /// Starts `upkeep serve` with `files` and waits until it listens.
    pub fn start(files: &ServiceFiles) -> ServiceProcess {
        let mut command = Command::new(binaries::path("upkeep"));
        command.arg("serve").arg("--config").arg(&files.config).env("RUST_LOG", "info,audit=info");
        let process = spawn_listening(command, "upkeep serve");
        ServiceProcess { addr: process.addr, process }
    }

    /// Sends a signal to the service.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Kills the service with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits for the service to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Everything the service wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}
