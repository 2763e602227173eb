//! A real `upkeep-agent` process for tests: config written to a temporary
//! directory, a fake kubelet beside it, stderr captured, killed on drop. The
//! same directory can be started again after a kill, as a restarted node would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::listening::{Listening, spawn_listening};
use crate::{binaries, fake_kubelet, pki::Pki};

/// How a test agent is set up.
#[derive(Debug, Clone, Default)]
pub struct AgentSetup {
    /// The version the installed fake kubelet prints.
    pub kubelet_version: String,
    /// Seconds between TLS file checks (0: on SIGHUP only).
    pub tls_reload_secs: u64,
    /// Extra keys of each component's `[[components]]` table; `{dir}` stands for
    /// the agent's directory and `{binary}` for the component's binary.
    pub component_extra: String,
    /// More fake components beside the kubelet, at the same version and with
    /// the same extra keys.
    pub more_components: Vec<String>,
    /// Extra TOML appended at the end (tables).
    pub extra: String,
    /// The loopback address to listen on (port 0 is chosen by the kernel);
    /// `127.0.0.1:0` when empty.
    pub listen: String,
    /// The node name the agent reports; `worker-1` when empty.
    pub node_name: String,
}

impl AgentSetup {
    /// A kubelet at `version` and nothing else.
    pub fn kubelet(version: &str) -> Self {
        Self { kubelet_version: version.to_owned(), ..Self::default() }
    }
}

/// A running agent.
pub struct AgentProcess {
    process: Listening,
    /// The address it listens on.
    pub addr: SocketAddr,
    dir: Arc<TempDir>,
}

/// The config of a test agent: a worker with one fake kubelet, listening on an
/// ephemeral loopback port, reading `file://` artifacts from the temporary
/// directory (where every test keeps them), plus the setup's extra TOML (an
/// `[artifacts]` table in it gets the file root added).
pub fn config_text(pki: &Pki, dir: &Path, kubelet: &Path, setup: &AgentSetup) -> String {
    let file_roots = format!("[artifacts]\nfile_roots = [\"{}\"]\n", std::env::temp_dir().display());
    let extra = if setup.extra.contains("[artifacts]\n") {
        setup.extra.replacen("[artifacts]\n", &file_roots, 1)
    } else {
        format!("{}\n{file_roots}", setup.extra)
    };
    format!(
        r#"node_name = "{node_name}"
role = "worker"
listen = "{listen}"
state_dir = "{state}"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
reload_interval_secs = {reload}

[[components]]
name = "kubelet"
binary = "{kubelet}"
kubernetes_skew = true
node_reports_version = true
{component_extra}
{more}

{extra}
"#,
        listen = if setup.listen.is_empty() { "127.0.0.1:0" } else { setup.listen.as_str() },
        node_name = if setup.node_name.is_empty() { "worker-1" } else { setup.node_name.as_str() },
        state = dir.join("state").display(),
        cert = pki.file("node.crt").display(),
        key = pki.file("node.key").display(),
        ca = pki.ca_cert().display(),
        reload = setup.tls_reload_secs,
        kubelet = kubelet.display(),
        component_extra = component_keys(setup, dir, kubelet),
        more = setup
            .more_components
            .iter()
            .map(|name| {
                let binary = dir.join(name);
                format!(
                    "[[components]]\nname = \"{name}\"\nbinary = \"{}\"\n{}",
                    binary.display(),
                    component_keys(setup, dir, &binary)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        extra = extra,
    )
}

fn component_keys(setup: &AgentSetup, dir: &Path, binary: &Path) -> String {
    setup
        .component_extra
        .replace("{dir}", &dir.display().to_string())
        .replace("{binary}", &binary.display().to_string())
}

impl AgentProcess {
    /// Starts an agent whose kubelet reports `kubelet_version`, with `extra`
    /// config; TLS files are reloaded on SIGHUP only.
    pub fn start(pki: &Pki, kubelet_version: &str, extra: &str) -> AgentProcess {
        Self::start_with(pki, &AgentSetup { extra: extra.to_owned(), ..AgentSetup::kubelet(kubelet_version) })
    }

    /// Starts an agent that also reloads its TLS files when they change,
    /// checking every `seconds`.
    pub fn start_with_tls_reload(pki: &Pki, kubelet_version: &str, seconds: u64) -> AgentProcess {
        Self::start_with(pki, &AgentSetup { tls_reload_secs: seconds, ..AgentSetup::kubelet(kubelet_version) })
    }

    /// Starts an agent as `setup` describes, in a new directory.
    pub fn start_with(pki: &Pki, setup: &AgentSetup) -> AgentProcess {
        let dir = Self::prepare(pki, setup);
        Self::launch(dir, &[])
    }

    /// Starts the agent binary at `binary` (such as [`binaries::shipped_agent`])
    /// as `setup` describes, in a new directory.
    pub fn start_binary(binary: &Path, pki: &Pki, setup: &AgentSetup) -> AgentProcess {
        let dir = Self::prepare(pki, setup);
        Self::launch_binary(binary, dir, &[])
    }

    /// A new directory with the fake components and the agent's config.
    fn prepare(pki: &Pki, setup: &AgentSetup) -> Arc<TempDir> {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let kubelet = fake_kubelet::write(dir.path(), "kubelet", &setup.kubelet_version);
        for name in &setup.more_components {
            fake_kubelet::write(dir.path(), name, &setup.kubelet_version);
        }
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_text(pki, dir.path(), &kubelet, setup)).expect("write config");
        dir
    }

    /// Kills this agent with SIGKILL and starts it again on the same directory
    /// (a new port), with `env` set for the new process.
    pub fn restart(mut self, env: &[(&str, &str)]) -> AgentProcess {
        self.process.kill();
        Self::launch(self.dir.clone(), env)
    }

    /// Starts the agent of `dir` with extra environment.
    pub fn launch(dir: Arc<TempDir>, env: &[(&str, &str)]) -> AgentProcess {
        // A crash point needs the tests' own agent binary; the product binary has none.
        let crashable = env.iter().any(|(name, _)| *name == "UPKEEP_CRASH_AT");
        let binary = if crashable { "upkeep-agent-crashable" } else { "upkeep-agent" };
        Self::launch_binary(&binaries::path(binary), dir, env)
    }

    /// Starts the agent binary at `binary` on the agent directory `dir`.
    fn launch_binary(binary: &Path, dir: Arc<TempDir>, env: &[(&str, &str)]) -> AgentProcess {
        let mut command = Command::new(binary);
        command.arg("--config").arg(dir.path().join("agent.toml")).env("RUST_LOG", "info,audit=info");
        for (name, value) in env {
            command.env(name, value);
        }
        let process = spawn_listening(command, "upkeep-agent");
        AgentProcess { addr: process.addr, process, dir }
    }

    /// The agent's working directory (config, fake kubelet, state).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The installed fake kubelet.
    pub fn kubelet_path(&self) -> PathBuf {
        self.dir.path().join("kubelet")
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Waits for the agent to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// Everything the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}
