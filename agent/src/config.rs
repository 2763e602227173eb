//! The agent's configuration file (TOML): parsed once into a validated
//! [`AgentConfig`], with every problem reported by the key it concerns.
//!
//! Unknown keys, missing keys and bad values are all collected, so
//! `upkeep-agent --check-config` prints every problem at once (a value of the
//! wrong TOML type stops parsing at that value, and is reported by its key).
//! `systemd/agent.example.toml` documents every key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use upkeep_common::api::NodeRole;
use upkeep_common::ids::{ComponentName, NodeName};

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
    /// Connection and request limits.
    pub server: ServerLimits,
    /// How the agent observes versions and host facts.
    pub probe: ProbeSettings,
    /// Where artifacts may come from and how they are checked.
    pub artifacts: ArtifactSettings,
    /// How long each upgrade step may take.
    pub timeouts: StepTimeouts,
}

/// Artifact limits and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSettings {
    /// Largest artifact accepted, in bytes.
    pub max_bytes: u64,
    /// CA bundle for `https://` sources; the Mozilla roots when absent.
    pub ca_file: Option<PathBuf>,
    /// ed25519 public keys (32 raw bytes each); when any is set, every artifact
    /// must carry a signature over its sha256 digest made by one of them.
    pub trusted_keys: Vec<[u8; 32]>,
}

impl Default for ArtifactSettings {
    fn default() -> Self {
        Self { max_bytes: 512 * 1024 * 1024, ca_file: None, trusted_keys: Vec::new() }
    }
}

/// The longest each upgrade step may run before it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTimeouts {
    /// PreCheck.
    pub precheck: Duration,
    /// Stage (download and verify).
    pub stage: Duration,
    /// Cordon and Uncordon.
    pub cordon: Duration,
    /// Drain, unless the request sets its own.
    pub drain: Duration,
    /// Swap.
    pub swap: Duration,
    /// Restart.
    pub restart: Duration,
    /// PostCheck, including waiting for the new version to answer and be healthy.
    pub postcheck: Duration,
}

impl Default for StepTimeouts {
    fn default() -> Self {
        Self {
            precheck: Duration::from_secs(60),
            stage: Duration::from_secs(900),
            cordon: Duration::from_secs(60),
            drain: Duration::from_secs(900),
            swap: Duration::from_secs(60),
            restart: Duration::from_secs(120),
            postcheck: Duration::from_secs(120),
        }
    }
}

/// Paths of the TLS material, reloaded on SIGHUP or when a file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that signs client (coordinator) certificates (PEM).
    pub client_ca: PathBuf,
    /// How often to look for changed files; `None` means on SIGHUP only.
    pub reload_interval: Option<Duration>,
}

/// One managed binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Its name, such as `kubelet`.
    pub name: ComponentName,
    /// The installed binary's absolute path.
    pub binary: PathBuf,
    /// The command that prints its version.
    pub version_command: Vec<String>,
    /// How it is restarted after a swap.
    pub restart: RestartMethod,
    /// A URL that answers 2xx when the component is healthy.
    pub health_url: Option<String>,
}

/// How a component is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartMethod {
    /// `systemctl restart UNIT`.
    Systemd(String),
    /// A command of its own, for hosts without systemd.
    Command(Vec<String>),
    /// Nothing to restart (a binary that is run on demand).
    None,
}

/// Kubernetes access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The kubeconfig file with the agent's credentials; `None` means the
    /// in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Time allowed for one call to the API server.
    pub request_timeout: Duration,
    /// Grace period given to each evicted pod unless a request sets one.
    pub drain_grace_period: Option<Duration>,
    /// Whether pods with local (emptyDir) storage may be evicted unless a request says.
    pub drain_allow_local_storage: bool,
    /// A label selector (`key=value,...`) of pods a drain leaves in place unless a request sets one.
    pub drain_skip_pod_selector: Option<String>,
}

/// Connection and request limits of the HTTPS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// How versions and host facts are observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time allowed for a version command.
    pub version_timeout: Duration,
    /// How often versions are probed between operations.
    pub interval: Duration,
    /// How often host facts are refreshed.
    pub host_facts_interval: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            version_timeout: Duration::from_secs(5),
            interval: Duration::from_secs(30),
            host_facts_interval: Duration::from_secs(5),
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key's dotted path, such as `components[0].binary`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read but has problems, listed one per line.
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    node_name: Option<String>,
    role: Option<String>,
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default)]
    components: Vec<RawComponent>,
    kubernetes: Option<RawKubernetes>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    probe: RawProbe,
    #[serde(default)]
    artifacts: RawArtifacts,
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Debug, Default, Deserialize)]
struct RawArtifacts {
    max_bytes: Option<u64>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTimeouts {
    precheck_secs: Option<u64>,
    stage_secs: Option<u64>,
    cordon_secs: Option<u64>,
    drain_secs: Option<u64>,
    swap_secs: Option<u64>,
    restart_secs: Option<u64>,
    postcheck_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    reload_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawComponent {
    name: Option<String>,
    binary: Option<PathBuf>,
    version_command: Option<Vec<String>>,
    service: Option<String>,
    restart_command: Option<Vec<String>>,
    health_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    in_cluster: bool,
    request_timeout_secs: Option<u64>,
    drain_grace_period_secs: Option<u64>,
    #[serde(default)]
    drain_allow_local_storage: bool,
    drain_skip_pod_selector: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawServer {
    max_connections: Option<u64>,
    max_body_bytes: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawProbe {
    version_timeout_secs: Option<u64>,
    interval_secs: Option<u64>,
    host_facts_interval_secs: Option<u64>,
}

/// Collects problems while turning raw values into validated ones.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem { key: key.into(), message: message.into() });
    }

    fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(key, "is required");
        }
        value
    }

    fn absolute_path(&mut self, key: &str, value: Option<PathBuf>) -> Option<PathBuf> {
        let path = self.required(key, value)?;
        if path.is_absolute() {
            Some(path)
        } else {
            self.add(key, format!("must be an absolute path, got {:?}", path.display().to_string()));
            None
        }
    }

    fn seconds(&mut self, key: &str, value: Option<u64>, default: Duration, range: (u64, u64)) -> Duration {
        match value {
            None => default,
            Some(secs) if (range.0..=range.1).contains(&secs) => Duration::from_secs(secs),
            Some(secs) => {
                self.add(key, format!("must be between {} and {} seconds, got {secs}", range.0, range.1));
                default
            }
        }
    }

    fn count(&mut self, key: &str, value: Option<u64>, default: usize, range: (u64, u64)) -> usize {
        match value {
            None => default,
            Some(n) if (range.0..=range.1).contains(&n) => usize::try_from(n).unwrap_or(default),
            Some(n) => {
                self.add(key, format!("must be between {} and {}, got {n}", range.0, range.1));
                default
            }
        }
    }

    fn command(&mut self, key: &str, command: Vec<String>) -> Option<Vec<String>> {
        match command.first() {
            None => {
                self.add(key, "must name a program");
                None
            }
            Some(program) if !Path::new(program).is_absolute() => {
                self.add(key, format!("program {program:?} must be an absolute path"));
                None
            }
            Some(_) => Some(command),
        }
    }
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
            Some(config) if problems.0.is_empty() => Ok(config),
            _ => Err(problems.0),
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
    let tls = validate_tls(raw.tls, problems);
    let components = validate_components(raw.components, problems);
    let kubernetes = raw.kubernetes.and_then(|kubernetes| {
        let kubeconfig = match (kubernetes.kubeconfig, kubernetes.in_cluster) {
            (Some(_), true) => {
                problems.add("kubernetes.in_cluster", "set kubeconfig or in_cluster = true, not both");
                return None;
            }
            (None, true) => None,
            (path, false) => Some(problems.absolute_path("kubernetes.kubeconfig", path)?),
        };
        let request_timeout = problems.seconds(
            "kubernetes.request_timeout_secs",
            kubernetes.request_timeout_secs,
            Duration::from_secs(10),
            (1, 300),
        );
        let drain_grace_period = kubernetes.drain_grace_period_secs.map(|secs| {
            problems.seconds("kubernetes.drain_grace_period_secs", Some(secs), Duration::ZERO, (0, 86_400))
        });
        Some(KubernetesConfig {
            kubeconfig,
            request_timeout,
            drain_grace_period,
            drain_allow_local_storage: kubernetes.drain_allow_local_storage,
            drain_skip_pod_selector: kubernetes.drain_skip_pod_selector,
        })
    });
    let server = validate_server(raw.server, problems);
    let probe = validate_probe(raw.probe, problems);
    let artifacts = validate_artifacts(raw.artifacts, problems);
    let timeouts = validate_timeouts(raw.timeouts, problems);
    Some(AgentConfig {
        node_name: node_name?,
        role: role?,
        listen: listen?,
        state_dir: state_dir?,
        tls: tls?,
        components: components?,
        kubernetes,
        server,
        probe,
        artifacts,
        timeouts,
    })
}

fn validate_artifacts(raw: RawArtifacts, problems: &mut Problems) -> ArtifactSettings {
    use base64::Engine as _;
    let default = ArtifactSettings::default();
    let max_bytes = match raw.max_bytes {
        None => default.max_bytes,
        Some(n) if (1..=16 * 1024 * 1024 * 1024).contains(&n) => n,
        Some(n) => {
            problems.add("artifacts.max_bytes", format!("must be between 1 and 17179869184, got {n}"));
            default.max_bytes
        }
    };
    let ca_file = raw.ca_file.and_then(|path| problems.absolute_path("artifacts.ca_file", Some(path)));
    let mut trusted_keys = Vec::new();
    for (index, key) in raw.trusted_keys.iter().enumerate() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim()).ok();
        let bytes: Option<[u8; 32]> = decoded.and_then(|bytes| bytes.try_into().ok());
        match bytes.filter(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok()) {
            Some(bytes) => trusted_keys.push(bytes),
            None => problems
                .add(format!("artifacts.trusted_keys[{index}]"), "must be a base64 ed25519 public key (32 bytes)"),
        }
    }
    ArtifactSettings { max_bytes, ca_file, trusted_keys }
}

fn validate_timeouts(raw: RawTimeouts, problems: &mut Problems) -> StepTimeouts {
    let default = StepTimeouts::default();
    let range = (1, 86_400);
    StepTimeouts {
        precheck: problems.seconds("timeouts.precheck_secs", raw.precheck_secs, default.precheck, range),
        stage: problems.seconds("timeouts.stage_secs", raw.stage_secs, default.stage, range),
        cordon: problems.seconds("timeouts.cordon_secs", raw.cordon_secs, default.cordon, range),
        drain: problems.seconds("timeouts.drain_secs", raw.drain_secs, default.drain, range),
        swap: problems.seconds("timeouts.swap_secs", raw.swap_secs, default.swap, range),
        restart: problems.seconds("timeouts.restart_secs", raw.restart_secs, default.restart, range),
        postcheck: problems.seconds("timeouts.postcheck_secs", raw.postcheck_secs, default.postcheck, range),
    }
}

fn validate_tls(raw: Option<RawTls>, problems: &mut Problems) -> Option<TlsPaths> {
    let Some(raw) = raw else {
        problems.add("tls", "is required (cert, key and client_ca)");
        return None;
    };
    let cert = problems.absolute_path("tls.cert", raw.cert);
    let key = problems.absolute_path("tls.key", raw.key);
    let client_ca = problems.absolute_path("tls.client_ca", raw.client_ca);
    let reload_interval = match raw.reload_interval_secs {
        None => Some(Duration::from_secs(30)),
        Some(0) => None,
        Some(secs) => {
            Some(problems.seconds("tls.reload_interval_secs", Some(secs), Duration::from_secs(30), (1, 86_400)))
        }
    };
    Some(TlsPaths { cert: cert?, key: key?, client_ca: client_ca?, reload_interval })
}

fn validate_components(raw: Vec<RawComponent>, problems: &mut Problems) -> Option<Vec<ComponentConfig>> {
    if raw.is_empty() {
        problems.add("components", "at least one [[components]] entry is required");
        return None;
    }
    let mut components = Vec::new();
    let mut all_valid = true;
    for (index, component) in raw.into_iter().enumerate() {
        match validate_component(index, component, problems) {
            Some(component) => components.push(component),
            None => all_valid = false,
        }
    }
    for (index, component) in components.iter().enumerate() {
        if components[..index].iter().any(|earlier| earlier.name == component.name) {
            problems.add(format!("components[{index}].name"), format!("{} is listed twice", component.name));
            all_valid = false;
        }
    }
    all_valid.then_some(components)
}

fn validate_component(index: usize, raw: RawComponent, problems: &mut Problems) -> Option<ComponentConfig> {
    let key = |field: &str| format!("components[{index}].{field}");
    let name = problems.required(&key("name"), raw.name).and_then(|name| {
        name.parse::<ComponentName>().map_err(|error| problems.add(key("name"), error.to_string())).ok()
    });
    let binary = problems.absolute_path(&key("binary"), raw.binary);
    let version_command = match (raw.version_command, &binary) {
        (Some(command), _) => problems.command(&key("version_command"), command),
        (None, Some(binary)) => Some(vec![binary.display().to_string(), "--version".to_owned()]),
        (None, None) => None,
    };
    let restart = match (raw.service, raw.restart_command) {
        (Some(_), Some(_)) => {
            problems.add(key("restart_command"), "set either service or restart_command, not both");
            None
        }
        (Some(service), None) if service.is_empty() || service.contains(char::is_whitespace) => {
            problems.add(key("service"), format!("{service:?} is not a systemd unit name"));
            None
        }
        (Some(service), None) => Some(RestartMethod::Systemd(service)),
        (None, Some(command)) => problems.command(&key("restart_command"), command).map(RestartMethod::Command),
        (None, None) => Some(RestartMethod::None),
    };
    let health_url = match raw.health_url {
        Some(url) if !url.starts_with("http://") => {
            problems.add(key("health_url"), format!("{url:?} must be an http:// URL (a local health endpoint)"));
            None
        }
        other => Some(other),
    };
    Some(ComponentConfig {
        name: name?,
        binary: binary?,
        version_command: version_command?,
        restart: restart?,
        health_url: health_url?,
    })
}

fn validate_server(raw: RawServer, problems: &mut Problems) -> ServerLimits {
    let default = ServerLimits::default();
    ServerLimits {
        max_connections: problems.count(
            "server.max_connections",
            raw.max_connections,
            default.max_connections,
            (1, 100_000),
        ),
        max_body_bytes: problems.count(
            "server.max_body_bytes",
            raw.max_body_bytes,
            default.max_body_bytes,
            (1024, 64 * 1024 * 1024),
        ),
        handshake_timeout: problems.seconds(
            "server.handshake_timeout_secs",
            raw.handshake_timeout_secs,
            default.handshake_timeout,
            (1, 600),
        ),
        header_read_timeout: problems.seconds(
            "server.header_read_timeout_secs",
            raw.header_read_timeout_secs,
            default.header_read_timeout,
            (1, 600),
        ),
        idle_timeout: problems.seconds(
            "server.idle_timeout_secs",
            raw.idle_timeout_secs,
            default.idle_timeout,
            (1, 86_400),
        ),
        shutdown_grace: problems.seconds(
            "server.shutdown_grace_secs",
            raw.shutdown_grace_secs,
            default.shutdown_grace,
            (0, 3_600),
        ),
    }
}

fn validate_probe(raw: RawProbe, problems: &mut Problems) -> ProbeSettings {
    let default = ProbeSettings::default();
    ProbeSettings {
        version_timeout: problems.seconds(
            "probe.version_timeout_secs",
            raw.version_timeout_secs,
            default.version_timeout,
            (1, 300),
        ),
        interval: problems.seconds("probe.interval_secs", raw.interval_secs, default.interval, (1, 86_400)),
        host_facts_interval: problems.seconds(
            "probe.host_facts_interval_secs",
            raw.host_facts_interval_secs,
            default.host_facts_interval,
            (1, 3_600),
        ),
    }
}

/// A minimal valid config managing `components` (each at `/usr/bin/NAME`), for tests.
#[cfg(test)]
pub(crate) fn sample_config(components: &[&str]) -> AgentConfig {
    let mut text = String::from(
        "node_name = \"worker-1\"\nrole = \"worker\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"/tmp/upkeep\"\n\
         [tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n",
    );
    for name in components {
        text.push_str(&format!("[[components]]\nname = \"{name}\"\nbinary = \"/usr/bin/{name}\"\n"));
    }
    AgentConfig::parse(&text).expect("the sample config is valid")
}

#[cfg(test)]
mod tests {
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
    fn broken_toml_names_the_line() {
        let problems = AgentConfig::parse("node_name = \"a\"\nrole = \n").expect_err("syntax error");
        assert_eq!(keys(&problems), ["line 2"], "{problems:?}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let example = include_str!("../../systemd/agent.example.toml");
        if let Err(problems) = AgentConfig::parse(example) {
            panic!("systemd/agent.example.toml is invalid: {problems:?}");
        }
    }
}
