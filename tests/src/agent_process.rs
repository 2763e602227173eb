//! A real `upkeep-agent` process for tests: config written to a temporary
//! directory, a fake kubelet beside it, stderr captured, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{binaries, fake_kubelet, pki::Pki};

/// How long a test waits for the agent to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running agent.
pub struct AgentProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    dir: TempDir,
    log: Arc<Mutex<String>>,
}

/// The config of a test agent: a worker with one fake kubelet, listening on an
/// ephemeral loopback port, TLS files checked every `tls_reload_secs` (0: on
/// SIGHUP only), plus `extra` TOML appended at the end.
pub fn config_text(pki: &Pki, dir: &Path, kubelet: &Path, tls_reload_secs: u64, extra: &str) -> String {
    format!(
        r#"node_name = "worker-1"
role = "worker"
listen = "127.0.0.1:0"
state_dir = "{state}"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
reload_interval_secs = {tls_reload_secs}

[[components]]
name = "kubelet"
binary = "{kubelet}"

{extra}
"#,
        state = dir.join("state").display(),
        cert = pki.file("node.crt").display(),
        key = pki.file("node.key").display(),
        ca = pki.ca_cert().display(),
        kubelet = kubelet.display(),
    )
}

impl AgentProcess {
    /// Starts an agent whose kubelet reports `kubelet_version`, with `extra`
    /// config; TLS files are reloaded on SIGHUP only.
    pub fn start(pki: &Pki, kubelet_version: &str, extra: &str) -> AgentProcess {
        Self::spawn(pki, kubelet_version, 0, extra)
    }

    /// Starts an agent that also reloads its TLS files when they change,
    /// checking every `seconds`.
    pub fn start_with_tls_reload(pki: &Pki, kubelet_version: &str, seconds: u64) -> AgentProcess {
        Self::spawn(pki, kubelet_version, seconds, "")
    }

    fn spawn(pki: &Pki, kubelet_version: &str, tls_reload_secs: u64, extra: &str) -> AgentProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubelet = fake_kubelet::write(dir.path(), "kubelet", kubelet_version);
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_text(pki, dir.path(), &kubelet, tls_reload_secs, extra)).expect("write config");
        let mut child = Command::new(binaries::path("upkeep-agent"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,audit=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("upkeep-agent starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listening on ").nth(1) {
                    let _ = address_sender.send(address.split_whitespace().next().unwrap_or_default().to_owned());
                }
                let mut log = log_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = match address_receiver.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                panic!("upkeep-agent did not start listening within {START_TIMEOUT:?}; its log:\n{log}");
            }
        };
        let addr = address.parse().unwrap_or_else(|_| panic!("agent printed a bad address {address:?}"));
        AgentProcess { child, addr, dir, log }
    }

    /// The agent's working directory (config, fake kubelet, state).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("signal delivered");
    }

    /// Waits for the agent to exit, up to `timeout`.
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

    /// Everything the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
