//! Tests of the service's config: the example file, paths, and every refusal.

use std::time::Duration;

use super::*;
use crate::plan::Limit;

const EXAMPLE: &str = include_str!("../../../../systemd/coordinator.example.toml");

const MINIMAL: &str = r#"
listen = "127.0.0.1:10266"
state_dir = "state"
[tls]
cert = "tls/coordinator.crt"
key = "/abs/coordinator.key"
client_ca = "tls/ca.crt"

[[clusters]]
name = "prod-eu-1"
inventory = ["fleet.toml"]
catalog = "releases.toml"
[clusters.policy]
max_unavailable = "10%"
max_failures = 1
soak = "250ms"
"#;

fn problems(text: &str) -> Vec<String> {
    match ServiceConfig::parse(text, Path::new("/etc/upkeep")) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn with_cluster(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn the_example_file_is_valid() {
    let config = match ServiceConfig::parse(EXAMPLE, Path::new("/etc/upkeep")) {
        Ok(config) => config,
        Err(error) => panic!("systemd/coordinator.example.toml is invalid: {error}"),
    };
    assert_eq!(config.clusters.len(), 2);
    let prod = config.cluster("prod-eu-1").expect("prod");
    assert_eq!(prod.policy.max_unavailable, Limit::Percent(10));
    assert_eq!(prod.policy.per_zone, Some(1));
    assert!(prod.policy.prestage);
    let staging = config.cluster("staging").expect("staging");
    assert_eq!(staging.policy, Policy::default());
    assert_eq!(staging.inventory[1], PathBuf::from("/etc/upkeep/staging/fleet-b.toml"));
}

#[test]
fn relative_paths_are_read_from_the_config_directory() {
    let config = ServiceConfig::parse(MINIMAL, Path::new("/etc/upkeep")).expect("valid");
    assert_eq!(config.state_dir, PathBuf::from("/etc/upkeep/state"));
    assert_eq!(config.tls.cert, PathBuf::from("/etc/upkeep/tls/coordinator.crt"));
    assert_eq!(config.tls.key, PathBuf::from("/abs/coordinator.key"));
    assert_eq!(config.clusters[0].inventory, [PathBuf::from("/etc/upkeep/fleet.toml")]);
    assert_eq!(config.clusters[0].catalog, PathBuf::from("/etc/upkeep/releases.toml"));
    assert_eq!(config.store, StoreConfig::Embedded);
    let policy = &config.clusters[0].policy;
    assert_eq!((policy.max_failures, policy.soak), (Limit::Count(1), Duration::from_millis(250)));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("coordinator.toml");
    std::fs::write(&file, MINIMAL).expect("write");
    let loaded = ServiceConfig::load(&file).expect("valid file");
    assert_eq!(loaded.clusters[0].catalog, dir.path().join("releases.toml"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = MINIMAL
        .replace("listen = \"127.0.0.1:10266\"", "listen = \"localhost\"\ncolour = \"red\"")
        .replace("soak = \"250ms\"", "soak = \"a while\"\nnode_timeout = \"8d\"\nshape = 1")
        .replace("name = \"prod-eu-1\"", "name = \"Prod EU\"");
    let found = problems(&text);
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).expect("in the text") + 1;
    let line = line_of("[[clusters]]");
    assert_eq!(
        found,
        [
            format!("clusters[0].policy.shape (line {}): unknown key", line_of("shape")),
            format!("colour (line {}): unknown key", line_of("colour")),
            "listen: \"localhost\" is not IP:PORT".to_owned(),
            format!(
                "clusters[0] (line {line}).name: \"Prod EU\" is not a cluster name \
                 (lowercase letters, digits and '-', 1 to 63, no '-' at either end)"
            ),
            format!(
                "clusters[0] (line {line}).policy.soak: \"a while\" is not a duration such as \"250ms\", \"10s\", \"5m\" or \"1h\""
            ),
            format!(
                "clusters[0] (line {line}).policy.node_timeout: \"8d\" is not a duration such as \"250ms\", \"10s\", \"5m\" or \"1h\""
            ),
        ]
    );
}

#[test]
fn values_out_of_range_are_refused() {
    let found = problems(&MINIMAL.replace("soak = \"250ms\"", "soak = \"25h\"\nnode_timeout = \"169h\"\nper_zone = 0"));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().any(|p| p.ends_with("policy.per_zone: 0 is not from 1 to 100000")), "{found:#?}");
    assert!(found.iter().any(|p| p.ends_with("policy.soak: 25h is longer than 24h")), "{found:#?}");
    assert!(found.iter().any(|p| p.ends_with("policy.node_timeout: 169h is not from 1s to 168h")), "{found:#?}");
    let none = problems(&MINIMAL.replace("max_unavailable = \"10%\"", "max_unavailable = 0"));
    assert!(none[0].ends_with("policy.max_unavailable: must let at least one node be unavailable"), "{none:?}");
    let empty = problems(&MINIMAL.replace("inventory = [\"fleet.toml\"]", "inventory = []"));
    assert!(empty[0].ends_with(".inventory: at least one inventory file is required"), "{empty:?}");
}

#[test]
fn gates_windows_etcd_and_kubernetes_are_refused_not_ignored() {
    let gates = with_cluster("[[clusters.policy.gates]]\nname = \"storage-healthy\"\nkind = \"http\"\n");
    let found = problems(&gates);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains(".policy.gates: health gates are not supported by this build yet"), "{found:?}");
    let windows = with_cluster("[[clusters.policy.windows]]\ndays = [\"Tue\"]\nstart = \"02:00\"\n");
    assert!(problems(&windows)[0].contains(".policy.windows: maintenance windows are not supported"));
    let etcd = MINIMAL.replace("[tls]", "[store]\nkind = \"etcd\"\nendpoints = [\"https://etcd:2379\"]\n[tls]");
    assert_eq!(problems(&etcd), ["store.kind: \"etcd\" is not supported by this build yet; use \"embedded\""]);
    let mixed = MINIMAL.replace("[tls]", "[store]\nkind = \"embedded\"\nprefix = \"/upkeep\"\n[tls]");
    assert_eq!(problems(&mixed), ["store: prefix belong to kind = \"etcd\", not \"embedded\""]);
    let kubernetes = with_cluster("[clusters.kubernetes]\nkubeconfig = \"/etc/upkeep/kubeconfig\"\n");
    assert!(
        problems(&kubernetes)[0].contains(".kubernetes: an inventory listed from the Kubernetes API is not supported")
    );
}

#[test]
fn cluster_names_are_unique() {
    let twice =
        with_cluster("\n[[clusters]]\nname = \"prod-eu-1\"\ninventory = [\"other.toml\"]\ncatalog = \"r.toml\"\n");
    let found = problems(&twice);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("clusters[1] (line"), "{found:?}");
    assert!(found[0].contains(".name: prod-eu-1 is also clusters[0] (line"), "{found:?}");
    let none = problems(&MINIMAL[..MINIMAL.find("[[clusters]]").expect("entry")]);
    assert_eq!(none, ["clusters: at least one [[clusters]] entry is required"]);
}

#[test]
fn a_missing_or_huge_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(ServiceConfig::load(&dir.path().join("absent.toml")), Err(ConfigError::Read { .. })));
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("{MINIMAL}#{}\n", "x".repeat(MAX_CONFIG_BYTES as usize))).expect("write");
    assert!(matches!(ServiceConfig::load(&huge), Err(ConfigError::TooLarge { .. })));
}
