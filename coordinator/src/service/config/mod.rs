//! The service's config (`coordinator.toml`, DESIGN.md §6): where it listens,
//! where its state lives, its own mutual TLS, its store, and the clusters it
//! manages, each with its inventory files, release catalog and rollout policy.
//! Relative paths are read relative to the config file; unknown keys, and
//! features this build lacks (health gates, maintenance windows, etcd,
//! Kubernetes inventories), are refused, never ignored; every problem is
//! reported at once. `systemd/coordinator.example.toml` is a documented example.
//!
//! # Layout
//!
//! - this file: the file as a whole, its clusters and their names.
//! - `policy`: a cluster's rollout policy and the overrides that may narrow it.
//! - `values`: durations and limits as they are written.

mod policy;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

pub use policy::{MAX_PER_ZONE, MAX_SOAK, Policy, PolicyOverrides};
pub use values::{MAX_LIMIT_COUNT, format_duration, parse_duration};

use crate::toml_problems::{self, FileTextError, Lines, read_file_text};

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The most clusters one service manages.
pub const MAX_CLUSTERS: usize = 256;
/// The most inventory files one cluster lists.
pub const MAX_INVENTORY_FILES: usize = 64;

/// The validated config of `upkeep serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceConfig {
    /// Where the HTTPS API listens.
    pub listen: SocketAddr,
    /// Where the service keeps its state (the embedded store).
    pub state_dir: PathBuf,
    /// The service's own mutual TLS.
    pub tls: TlsFiles,
    /// Where updates are stored.
    pub store: StoreConfig,
    /// The clusters, in the file's order, names unique.
    pub clusters: Vec<ClusterConfig>,
}

/// The service's certificate, key and the CA its clients' certificates chain to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM).
    pub client_ca: PathBuf,
}

/// Where the service stores its updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StoreConfig {
    /// One database file under the state directory.
    Embedded,
}

/// One managed cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// Its name in the API (`/v1/clusters/{name}`).
    pub name: ClusterName,
    /// Its inventory files, read as one fleet.
    pub inventory: Vec<PathBuf>,
    /// Its release catalog.
    pub catalog: PathBuf,
    /// Its rollout policy.
    pub policy: Policy,
}

/// A cluster's name: lowercase letters, digits and '-', 1 to 63, not starting
/// or ending with '-' (it appears in URLs and in roles as `upkeep:ROLE:CLUSTER`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

/// Why a config could not be loaded. Only [`ConfigError::Read`] may pass on
/// its own; the others need the file fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (retryable).
    #[error("cannot read the config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("the config {} is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The text has problems, each naming its key.
    #[error("the config{} has {} problem(s):\n{}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        problems.len(),
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// Every problem found.
        problems: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    listen: String,
    state_dir: PathBuf,
    tls: RawTls,
    #[serde(default)]
    store: Option<RawStore>,
    #[serde(default)]
    clusters: Vec<Spanned<RawCluster>>,
}

#[derive(Debug, Deserialize)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

/// The store section; the etcd keys are read only to refuse them clearly.
#[derive(Debug, Deserialize)]
struct RawStore {
    kind: String,
    #[serde(default)]
    endpoints: Option<toml::Value>,
    #[serde(default)]
    prefix: Option<toml::Value>,
    #[serde(default)]
    tls: Option<toml::Value>,
    #[serde(default)]
    lease_ttl: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawCluster {
    name: String,
    #[serde(default)]
    inventory: Vec<PathBuf>,
    catalog: PathBuf,
    #[serde(default)]
    policy: Option<policy::RawPolicy>,
    #[serde(default)]
    kubernetes: Option<toml::Value>,
}

impl ServiceConfig {
    /// Reads and validates a config file; relative paths are read relative to its directory.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        let text = read_file_text(path, MAX_CONFIG_BYTES).map_err(|error| match error {
            FileTextError::Io(source) => ConfigError::Read { path: path.to_owned(), source },
            FileTextError::TooLarge => ConfigError::TooLarge { path: path.to_owned() },
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        parse(&text, base).map_err(|problems| ConfigError::Invalid { path: Some(path.to_owned()), problems })
    }

    /// Parses and validates config text; relative paths are joined to `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<ServiceConfig, ConfigError> {
        parse(text, base_dir).map_err(|problems| ConfigError::Invalid { path: None, problems })
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|cluster| cluster.name.as_str() == name)
    }
}

fn parse(text: &str, base: &Path) -> Result<ServiceConfig, Vec<String>> {
    let (raw, mut problems) = toml_problems::read::<RawConfig>(text);
    let Some(raw) = raw else { return Err(problems) };
    let lines = Lines::of(text);
    let mut path = |key: &str, path: PathBuf| {
        if path.as_os_str().is_empty() {
            problems.push(format!("{key}: an empty path"));
        }
        base.join(path)
    };
    let state_dir = path("state_dir", raw.state_dir);
    let tls = TlsFiles {
        cert: path("tls.cert", raw.tls.cert),
        key: path("tls.key", raw.tls.key),
        client_ca: path("tls.client_ca", raw.tls.client_ca),
    };
    let listen = raw.listen.parse::<SocketAddr>();
    if listen.is_err() {
        problems.push(format!("listen: {:?} is not IP:PORT", raw.listen));
    }
    let store = store(raw.store, &mut problems);
    if raw.clusters.is_empty() {
        problems.push("clusters: at least one [[clusters]] entry is required".to_owned());
    }
    if raw.clusters.len() > MAX_CLUSTERS {
        problems.push(format!("clusters: {} entries, at most {MAX_CLUSTERS} are accepted", raw.clusters.len()));
    }
    let mut clusters: Vec<ClusterConfig> = Vec::new();
    let mut names: HashMap<ClusterName, String> = HashMap::new();
    for (index, entry) in raw.clusters.into_iter().enumerate() {
        let key = format!("clusters[{index}] (line {})", lines.line_of(entry.span().start));
        let Some(cluster) = cluster(&key, entry.into_inner(), base, &mut problems) else { continue };
        match names.get(&cluster.name) {
            Some(first) => problems.push(format!("{key}.name: {} is also {first}", cluster.name)),
            None => {
                names.insert(cluster.name.clone(), key);
                clusters.push(cluster);
            }
        }
    }
    match (listen, store) {
        (Ok(listen), Some(store)) if problems.is_empty() => {
            Ok(ServiceConfig { listen, state_dir, tls, store, clusters })
        }
        _ => Err(problems),
    }
}

fn store(raw: Option<RawStore>, problems: &mut Vec<String>) -> Option<StoreConfig> {
    let Some(raw) = raw else { return Some(StoreConfig::Embedded) };
    let etcd_keys =
        [("endpoints", &raw.endpoints), ("prefix", &raw.prefix), ("tls", &raw.tls), ("lease_ttl", &raw.lease_ttl)];
    match raw.kind.as_str() {
        "embedded" => {
            let given: Vec<&str> = etcd_keys.iter().filter(|(_, value)| value.is_some()).map(|(key, _)| *key).collect();
            if given.is_empty() {
                return Some(StoreConfig::Embedded);
            }
            problems.push(format!("store: {} belong to kind = \"etcd\", not \"embedded\"", given.join(", ")));
            None
        }
        "etcd" => {
            problems.push("store.kind: \"etcd\" is not supported by this build yet; use \"embedded\"".to_owned());
            None
        }
        other => {
            problems.push(format!("store.kind: must be \"embedded\" or \"etcd\", got {other:?}"));
            None
        }
    }
}

fn cluster(key: &str, raw: RawCluster, base: &Path, problems: &mut Vec<String>) -> Option<ClusterConfig> {
    let before = problems.len();
    let name = raw.name.parse::<ClusterName>().map_err(|why| problems.push(format!("{key}.name: {why}"))).ok();
    if raw.inventory.is_empty() {
        problems.push(format!("{key}.inventory: at least one inventory file is required"));
    }
    if raw.inventory.len() > MAX_INVENTORY_FILES {
        problems.push(format!("{key}.inventory: {} files, at most {MAX_INVENTORY_FILES}", raw.inventory.len()));
    }
    for (index, file) in raw.inventory.iter().enumerate() {
        if file.as_os_str().is_empty() {
            problems.push(format!("{key}.inventory[{index}]: an empty path"));
        }
    }
    if raw.catalog.as_os_str().is_empty() {
        problems.push(format!("{key}.catalog: an empty path"));
    }
    if raw.kubernetes.is_some() {
        problems.push(format!(
            "{key}.kubernetes: an inventory listed from the Kubernetes API is not supported by this build yet; list inventory files"
        ));
    }
    let mut policy_problems = Vec::new();
    let policy = policy::validate(raw.policy.unwrap_or_default(), &mut policy_problems);
    problems.extend(policy_problems.into_iter().map(|(field, why)| format!("{key}.policy.{field}: {why}")));
    if problems.len() > before {
        return None;
    }
    Some(ClusterConfig {
        name: name?,
        inventory: raw.inventory.into_iter().map(|file| base.join(file)).collect(),
        catalog: base.join(raw.catalog),
        policy: policy?,
    })
}

impl ClusterName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClusterName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let ok = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(ClusterName(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a cluster name (lowercase letters, digits and '-', 1 to 63, no '-' at either end)"
            ))
        }
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ClusterName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
