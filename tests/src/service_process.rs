//! A real `upkeep serve` process over a test fleet: its config, release
//! catalog and state directory written beside the fleet, its server
//! certificate from the fleet's PKI, stderr captured, killed on drop. The same
//! files can be served again after a kill, as a restarted service would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl ServiceProcess {
    /// Starts `upkeep serve` with `files` and waits until it listens.
    pub fn start(files: &ServiceFiles) -> ServiceProcess {
        let mut command = Command::new(binaries::path("upkeep"));
        command.arg("serve").arg("--config").arg(&files.config).env("RUST_LOG", "info,audit=info");
        let Listening { child, addr, log } = spawn_listening(command, "upkeep serve");
        ServiceProcess { child, addr, log }
    }

    /// Sends a signal to the service.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("signal delivered");
    }

    /// Kills the service with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the service to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything the service wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
