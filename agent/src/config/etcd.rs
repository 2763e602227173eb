//! `[etcd]`: how a control-plane node's agent reaches etcd for snapshots and
//! health: the client endpoints and the node's etcd client certificate.
//! Without the table the agent has no etcd access.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// The etcd endpoint of a kubeadm control-plane node.
const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:2379";
/// How long one snapshot may take unless configured.
const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest snapshot kept unless configured: etcd's own recommended ceiling.
const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// The bounds of `max_snapshot_bytes`: 1 KiB to 64 GiB.
const MAX_SNAPSHOT_BYTES_RANGE: (u64, u64) = (1024, 64 * 1024 * 1024 * 1024);
/// How many snapshot files are kept unless configured.
const DEFAULT_KEEP_SNAPSHOTS: usize = 3;
/// The most endpoints one agent tries.
const MAX_ENDPOINTS: usize = 16;

/// etcd access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs (`https://HOST:PORT`), tried in order until one answers.
    pub endpoints: Vec<String>,
    /// The CA that signs etcd's server certificate (PEM).
    pub ca: PathBuf,
    /// The node's etcd client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The longest one snapshot may take, from connecting to the fsynced file.
    pub snapshot_timeout: Duration,
    /// The largest snapshot accepted; a larger stream is abandoned.
    pub max_snapshot_bytes: u64,
    /// How many snapshot files are kept (the newest ones).
    pub keep_snapshots: usize,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawEtcd {
    endpoints: Option<Vec<String>>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    snapshot_timeout_secs: Option<u64>,
    max_snapshot_bytes: Option<u64>,
    keep_snapshots: Option<u64>,
}

pub(super) fn validate_etcd(raw: RawEtcd, problems: &mut Problems) -> Option<EtcdConfig> {
    let endpoints = validate_endpoints(raw.endpoints, problems);
    let ca = problems.absolute_path("etcd.ca", raw.ca);
    let cert = problems.absolute_path("etcd.cert", raw.cert);
    let key = problems.absolute_path("etcd.key", raw.key);
    let snapshot_timeout =
        problems.seconds("etcd.snapshot_timeout_secs", raw.snapshot_timeout_secs, DEFAULT_SNAPSHOT_TIMEOUT, (1, 3600));
    let max_snapshot_bytes = problems
        .bounded("etcd.max_snapshot_bytes", raw.max_snapshot_bytes, MAX_SNAPSHOT_BYTES_RANGE, " bytes")
        .unwrap_or(DEFAULT_MAX_SNAPSHOT_BYTES);
    let keep_snapshots = problems.count("etcd.keep_snapshots", raw.keep_snapshots, DEFAULT_KEEP_SNAPSHOTS, (1, 100));
    Some(EtcdConfig {
        endpoints: endpoints?,
        ca: ca?,
        cert: cert?,
        key: key?,
        snapshot_timeout,
        max_snapshot_bytes,
        keep_snapshots,
    })
}

/// The endpoints, each an `https://HOST:PORT` URL with no path; the default
/// endpoint when none are given.
fn validate_endpoints(raw: Option<Vec<String>>, problems: &mut Problems) -> Option<Vec<String>> {
    let Some(endpoints) = raw else { return Some(vec![DEFAULT_ENDPOINT.to_owned()]) };
    if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
        problems.add("etcd.endpoints", format!("must list 1 to {MAX_ENDPOINTS} URLs, got {}", endpoints.len()));
        return None;
    }
    let mut valid = true;
    for (index, endpoint) in endpoints.iter().enumerate() {
        if let Err(reason) = check_endpoint(endpoint) {
            problems.add(format!("etcd.endpoints[{index}]"), format!("{endpoint:?} {reason}"));
            valid = false;
        }
    }
    valid.then_some(endpoints)
}

fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = endpoint.parse().map_err(|_| "is not a URL")?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an https:// URL (etcd is reached with the node's client certificate)");
    }
    if uri.host().is_none_or(str::is_empty) || uri.port_u16().is_none() {
        return Err("must name a host and a port, such as https://127.0.0.1:2379");
    }
    if uri.path_and_query().is_some_and(|path| path.as_str() != "/") || endpoint.ends_with('/') {
        return Err("must have no path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> (Option<EtcdConfig>, Vec<String>) {
        let raw: RawEtcd = toml::from_str(text).expect("raw table");
        let mut problems = Problems::default();
        let config = validate_etcd(raw, &mut problems);
        (config, problems.into_vec().into_iter().map(|p| format!("{}: {}", p.key, p.message)).collect())
    }

    const FILES: &str = "ca = \"/etc/kubernetes/pki/etcd/ca.crt\"\ncert = \"/c.crt\"\nkey = \"/c.key\"\n";

    #[test]
    fn defaults_fill_everything_but_the_files() {
        let (config, problems) = validate(FILES);
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.expect("valid");
        assert_eq!(config.endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(config.snapshot_timeout, Duration::from_secs(300));
        assert_eq!(config.max_snapshot_bytes, 8 << 30);
        assert_eq!(config.keep_snapshots, 3);
        let (_, problems) = validate("");
        assert_eq!(problems.len(), 3, "ca, cert and key are required: {problems:?}");
    }

    #[test]
    fn endpoints_are_https_with_a_port_and_no_path() {
        let text = format!(
            "{FILES}endpoints = [\"https://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"https://10.0.0.3\", \
             \"https://10.0.0.4:2379/v3\", \"not a url\"]\n"
        );
        let (config, problems) = validate(&text);
        assert!(config.is_none());
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(keys, ["etcd.endpoints[1]", "etcd.endpoints[2]", "etcd.endpoints[3]", "etcd.endpoints[4]"]);
        let (_, problems) = validate(&format!("{FILES}endpoints = []\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn numbers_are_bounded() {
        let text = format!("{FILES}snapshot_timeout_secs = 0\nmax_snapshot_bytes = 100\nkeep_snapshots = 0\n");
        let (_, problems) = validate(&text);
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap_or("")).collect();
        assert_eq!(keys, ["etcd.snapshot_timeout_secs", "etcd.max_snapshot_bytes", "etcd.keep_snapshots"]);
        let text = format!("{FILES}snapshot_timeout_secs = 30\nmax_snapshot_bytes = 4096\nkeep_snapshots = 5\n");
        let config = validate(&text).0.expect("valid");
        assert_eq!(
            (config.snapshot_timeout, config.max_snapshot_bytes, config.keep_snapshots),
            (Duration::from_secs(30), 4096, 5)
        );
    }
}
