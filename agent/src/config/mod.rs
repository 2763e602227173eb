//! The agent's configuration file (TOML): parsed once into a validated
//! [`AgentConfig`], with every problem reported by the key it concerns.
//!
//! Unknown keys, missing keys and bad values are all collected, so
//! `upkeep-agent --check-config` prints every problem at once (a value of the
//! wrong TOML type stops parsing at that value, and is reported by its key).
//! `systemd/agent.example.toml` documents every key.
//!
//! One file per section, each with its raw (as read) and validated types, its
//! defaults and its validator: `tls`, `components`, `kubernetes`, `etcd`, `server`,
//! `probe`, `artifacts`, `timeouts` (and `static_pod`, the static-pod keys of a
//! component); `problems` collects what is wrong.

mod artifacts;
mod components;
mod etcd;
mod kubernetes;
mod probe;
mod problems;
mod server;
mod static_pod;
mod timeouts;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use upkeep_common::api::NodeRole;
use upkeep_common::ids::NodeName;

pub use self::artifacts::ArtifactSettings;
pub use self::components::{ComponentConfig, ComponentKind, RestartMethod};
pub use self::etcd::EtcdConfig;
pub use self::kubernetes::KubernetesConfig;
pub use self::probe::ProbeSettings;
use self::problems::Problems;
pub use self::problems::{ConfigError, ConfigProblem};
pub use self::server::ServerLimits;
pub use self::static_pod::{StaticPodSettings, default_staging_dir};
pub use self::timeouts::StepTimeouts;
pub use self::tls::TlsPaths;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The Kubernetes node this agent serves.
    pub node_name: NodeName,
    /// Control plane or worker.
    pub role: NodeRole,
    /// Address the HTTPS API listens on.
    pub listen: SocketAddr,
    /// Where state, staged artifacts and backups live.
    pub state_dir: PathBuf,
    /// Certificate, key and client CA.
    pub tls: TlsPaths,
    /// The managed binaries.
    pub components: Vec<ComponentConfig>,
    /// Kubernetes access; absent means cordon and drain are skipped.
    pub kubernetes: Option<KubernetesConfig>,
    /// etcd access for snapshots and health; absent means none.
    pub etcd: Option<EtcdConfig>,
    /// Connection and request limits.
    pub server: ServerLimits,
    /// How the agent observes versions and host facts.
    pub probe: ProbeSettings,
    /// Where artifacts may come from and how they are checked.
    pub artifacts: ArtifactSettings,
    /// How long each upgrade step may take.
    pub timeouts: StepTimeouts,
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    node_name: Option<String>,
    role: Option<String>,
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    tls: Option<tls::RawTls>,
    #[serde(default)]
    components: Vec<components::RawComponent>,
    kubernetes: Option<kubernetes::RawKubernetes>,
    etcd: Option<etcd::RawEtcd>,
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    probe: probe::RawProbe,
    #[serde(default)]
    artifacts: artifacts::RawArtifacts,
    #[serde(default)]
    timeouts: timeouts::RawTimeouts,
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        AgentConfig::parse(&text).map_err(|problems| ConfigError::Invalid { path: path.to_owned(), problems })
    }

    /// Parses and validates configuration text, returning every problem found.
    pub fn parse(text: &str) -> Result<AgentConfig, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let raw = read_raw(text, &mut problems);
        let config = raw.and_then(|raw| validate(raw, &mut problems));
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems.into_vec()),
        }
    }
}

fn read_raw(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    let deserializer = match toml::Deserializer::parse(text) {
        Ok(deserializer) => deserializer,
        Err(error) => {
            problems.add(location(text, &error), format!("not valid TOML: {}", error.message()));
            return None;
        }
    };
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
    let mut unknown = Vec::new();
    let raw = serde_ignored::deserialize(tracked, |path| unknown.push(path.to_string().replace(".?", "")));
    for key in unknown {
        problems.add(key, "unknown key");
    }
    match raw {
        Ok(raw) => Some(raw),
        Err(error) => {
            let key = track.path().to_string();
            let key = if key.is_empty() || key == "." { location(text, &error) } else { key };
            problems.add(key, error.message().to_owned());
            None
        }
    }
}

fn location(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => format!("line {}", text[..span.start.min(text.len())].matches('\n').count() + 1),
        None => "file".to_owned(),
    }
}

fn validate(raw: RawConfig, problems: &mut Problems) -> Option<AgentConfig> {
    let node_name = problems
        .required("node_name", raw.node_name)
        .and_then(|name| name.parse::<NodeName>().map_err(|error| problems.add("node_name", error.to_string())).ok());
    let role = match problems.required("role", raw.role).as_deref() {
        Some("worker") => Some(NodeRole::Worker),
        Some("control-plane") => Some(NodeRole::ControlPlane),
        Some(other) => {
            problems.add("role", format!("must be \"worker\" or \"control-plane\", got {other:?}"));
            None
        }
        None => None,
    };
    let listen = problems.required("listen", raw.listen).and_then(|listen| {
        listen.parse::<SocketAddr>().map_err(|_| problems.add("listen", format!("{listen:?} is not ADDRESS:PORT"))).ok()
    });
    let state_dir = problems.absolute_path("state_dir", raw.state_dir);
    let tls = tls::validate_tls(raw.tls, problems);
    let components = components::validate_components(raw.components, node_name.as_ref().map(|n| n.as_str()), problems);
    let kubernetes = raw.kubernetes.and_then(|raw| kubernetes::validate_kubernetes(raw, problems));
    let etcd = raw.etcd.and_then(|raw| etcd::validate_etcd(raw, problems));
    let server = server::validate_server(raw.server, problems);
    let probe = probe::validate_probe(raw.probe, problems);
    let artifacts = artifacts::validate_artifacts(raw.artifacts, problems);
    let timeouts = timeouts::validate_timeouts(raw.timeouts, problems);
    Some(AgentConfig {
        node_name: node_name?,
        role: role?,
        listen: listen?,
        state_dir: state_dir?,
        tls: tls?,
        components: components?,
        kubernetes,
        etcd,
        server,
        probe,
        artifacts,
        timeouts,
    })
}

/// A minimal valid config managing `components` (each at `/usr/bin/NAME`),
/// with `file://` sources allowed under `/srv`, for tests.
#[cfg(test)]
pub(crate) fn sample_config(components: &[&str]) -> AgentConfig {
    let mut text = String::from(
        "node_name = \"worker-1\"\nrole = \"worker\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"/tmp/upkeep\"\n\
         [tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n[artifacts]\nfile_roots = [\"/srv\"]\n",
    );
    for name in components {
        text.push_str(&format!(
            "[[components]]\nname = \"{name}\"\nbinary = \"/usr/bin/{name}\"\nkubernetes_skew = {}\n\
             node_reports_version = {}\n",
            name.starts_with("kube"),
            *name == "kubelet"
        ));
    }
    AgentConfig::parse(&text).expect("the sample config is valid")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const VALID: &str = r#"
node_name = "worker-1"
role = "worker"
listen = "127.0.0.1:10265"
state_dir = "/var/lib/upkeep"

[tls]
cert = "/etc/upkeep/tls/node.crt"
key = "/etc/upkeep/tls/node.key"
client_ca = "/etc/upkeep/tls/ca.crt"

[[components]]
name = "kubelet"
binary = "/usr/bin/kubelet"
service = "kubelet.service"
health_url = "http://127.0.0.1:10248/healthz"

[[components]]
name = "kube-proxy"
binary = "/usr/bin/kube-proxy"
restart_command = ["/usr/local/bin/restart-kube-proxy"]

[kubernetes]
kubeconfig = "/etc/upkeep/kubeconfig"
"#;

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn a_valid_file_parses_with_defaults() {
        let config = AgentConfig::parse(VALID).expect("valid config");
        assert_eq!(config.node_name.as_str(), "worker-1");
        assert_eq!(config.role, NodeRole::Worker);
        assert_eq!(config.components.len(), 2);
        assert_eq!(config.components[0].version_command, ["/usr/bin/kubelet", "--version"]);
        assert_eq!(config.components[0].restart, RestartMethod::Systemd("kubelet.service".into()));
        assert_eq!(
            config.components[1].restart,
            RestartMethod::Command(vec!["/usr/local/bin/restart-kube-proxy".into()])
        );
        assert_eq!(config.server, ServerLimits::default());
        assert_eq!(config.tls.reload_interval, Some(Duration::from_secs(30)));
    }

    #[test]
    fn every_unknown_key_is_named() {
        let text = format!("{VALID}\nbogus = 1\n[server]\nmax_conections = 5\n");
        let text = text.replace("cert = \"/etc", "certt = \"/etc");
        let problems = AgentConfig::parse(&text).expect_err("unknown keys are refused");
        let keys = keys(&problems);
        assert!(keys.contains(&"kubernetes.bogus"), "{keys:?}");
        assert!(keys.contains(&"server.max_conections"), "{keys:?}");
        assert!(keys.contains(&"tls.certt"), "{keys:?}");
        assert!(keys.contains(&"tls.cert"), "missing tls.cert is reported too: {keys:?}");
    }

    #[test]
    fn every_bad_value_is_reported_together() {
        let text = VALID
            .replace("\"worker-1\"", "\"Worker_1\"")
            .replace("role = \"worker\"", "role = \"boss\"")
            .replace("127.0.0.1:10265", "nowhere")
            .replace("\"/var/lib/upkeep\"", "\"relative/dir\"")
            .replace("http://127.0.0.1:10248/healthz", "ftp://x");
        let problems = AgentConfig::parse(&text).expect_err("bad values are refused");
        assert_eq!(
            keys(&problems),
            ["node_name", "role", "listen", "state_dir", "components[0].health_url"],
            "{problems:?}"
        );
        assert!(problems[1].message.contains("\"boss\""));
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let text = format!("{VALID}\n[server]\nmax_connections = \"many\"\n");
        let problems = AgentConfig::parse(&text).expect_err("wrong type is refused");
        assert_eq!(keys(&problems), ["server.max_connections"], "{problems:?}");
    }

    #[test]
    fn missing_keys_and_conflicts() {
        let problems = AgentConfig::parse("").expect_err("empty file is refused");
        assert_eq!(keys(&problems), ["node_name", "role", "listen", "state_dir", "tls", "components"]);
        let both = VALID.replace(
            "service = \"kubelet.service\"",
            "service = \"kubelet.service\"\nrestart_command = [\"/bin/true\"]",
        );
        let problems = AgentConfig::parse(&both).expect_err("both restart methods are refused");
        assert_eq!(keys(&problems), ["components[0].restart_command"]);
        let twice = VALID.replace("name = \"kube-proxy\"", "name = \"kubelet\"");
        let problems = AgentConfig::parse(&twice).expect_err("duplicate names are refused");
        assert_eq!(keys(&problems), ["components[1].name"]);
    }

    #[test]
    fn out_of_range_limits_are_refused() {
        let text = format!("{VALID}\n[server]\nmax_connections = 0\nidle_timeout_secs = 0\n");
        let problems = AgentConfig::parse(&text).expect_err("zero limits are refused");
        assert_eq!(keys(&problems), ["server.max_connections", "server.idle_timeout_secs"]);
    }

    #[test]
    fn the_body_read_timeout_is_read_and_bounded() {
        let text = format!("{VALID}\n[server]\nbody_read_timeout_secs = 7\n");
        let config = AgentConfig::parse(&text).expect("valid");
        assert_eq!(config.server.body_read_timeout, Duration::from_secs(7));
        let default = AgentConfig::parse(VALID).expect("valid");
        assert_eq!(default.server.body_read_timeout, Duration::from_secs(10));
        for bad in [0, 601] {
            let text = format!("{VALID}\n[server]\nbody_read_timeout_secs = {bad}\n");
            let problems = AgentConfig::parse(&text).expect_err("out of range");
            assert_eq!(keys(&problems), ["server.body_read_timeout_secs"]);
        }
    }

    #[test]
    fn what_kubernetes_knows_of_a_component_is_set_per_component_not_by_name() {
        let plain = AgentConfig::parse(VALID).expect("valid");
        assert!(plain.components.iter().all(|c| !c.kubernetes_skew && !c.node_reports_version), "off by default");
        let text = VALID.replacen(
            "binary = \"/usr/bin/kube-proxy\"",
            "binary = \"/usr/bin/kube-proxy\"\nkubernetes_skew = true\nnode_reports_version = true",
            1,
        );
        let set = AgentConfig::parse(&text).expect("valid");
        let flags: Vec<(bool, bool)> =
            set.components.iter().map(|c| (c.kubernetes_skew, c.node_reports_version)).collect();
        assert_eq!(flags, [(false, false), (true, true)]);
        let wrong =
            VALID.replacen("binary = \"/usr/bin/kubelet\"", "binary = \"/usr/bin/kubelet\"\nkubernetes_skew = 1", 1);
        let problems = AgentConfig::parse(&wrong).expect_err("not a boolean");
        assert_eq!(keys(&problems), ["components[0].kubernetes_skew"]);
    }

    #[test]
    fn file_roots_are_absolute_and_normal() {
        assert!(AgentConfig::parse(VALID).expect("valid").artifacts.file_roots.is_empty(), "none by default");
        let text = format!("{VALID}\n[artifacts]\nfile_roots = [\"/srv/artifacts\", \"srv\", \"/srv/../etc\"]\n");
        let problems = AgentConfig::parse(&text).expect_err("bad roots are refused");
        assert_eq!(keys(&problems), ["artifacts.file_roots[1]", "artifacts.file_roots[2]"], "{problems:?}");
        let text = format!("{VALID}\n[artifacts]\nfile_roots = [\"/srv/artifacts\"]\n");
        let config = AgentConfig::parse(&text).expect("valid roots");
        assert_eq!(config.artifacts.file_roots, [PathBuf::from("/srv/artifacts")]);
    }

    #[test]
    fn broken_toml_names_the_line() {
        let problems = AgentConfig::parse("node_name = \"a\"\nrole = \n").expect_err("syntax error");
        assert_eq!(keys(&problems), ["line 2"], "{problems:?}");
    }

    #[test]
    fn the_example_files_etcd_table_is_valid_once_uncommented() {
        let example = include_str!("../../../systemd/agent.example.toml");
        let start = example.find("# [etcd]\n").expect("the example shows an [etcd] table");
        let block = example[start..].split("\n\n").next().unwrap_or_default();
        let uncommented: String =
            block.lines().map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(&line[1..]))).collect();
        let text = format!("{VALID}\n{uncommented}");
        let config = AgentConfig::parse(&text).unwrap_or_else(|problems| panic!("{problems:?}\n{uncommented}"));
        let etcd = config.etcd.expect("the table is read");
        assert_eq!(etcd.cert, PathBuf::from("/etc/kubernetes/pki/etcd/healthcheck-client.crt"));
        assert_eq!(etcd.keep_snapshots, 3);
        assert!(AgentConfig::parse(VALID).expect("valid").etcd.is_none(), "no table, no etcd access");
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = include_str!("../../../systemd/agent.example.toml");
        if let Err(problems) = AgentConfig::parse(example) {
            panic!("systemd/agent.example.toml is invalid: {problems:?}");
        }
    }
}
