//! The fleet inventory (TOML): the nodes (name, address, role, labels such as
//! `zone`) and the TLS files the coordinator uses to reach them.
//!
//! ```toml
//! ca = "tls/ca.crt"              # trusts the agents' server certificates
//! client_cert = "tls/ops.crt"    # the coordinator's client certificate (its O is its role)
//! client_key = "tls/ops.key"
//!
//! [[nodes]]
//! name = "cp-1"
//! address = "10.0.0.10:10265"
//! role = "control-plane"
//! labels = { zone = "a" }
//! ```
//!
//! Relative paths are read relative to the inventory file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkeep_common::api::NodeRole;
use upkeep_common::ids::NodeName;

/// One node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryNode {
    /// The Kubernetes node name.
    pub name: NodeName,
    /// The agent's address, `IP:PORT` or `HOST:PORT`.
    pub address: String,
    /// Control plane or worker.
    pub role: NodeRole,
    /// Free-form labels; `zone` is used by `--per-zone`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl InventoryNode {
    /// The node's zone label, if any.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get("zone").map(String::as_str)
    }
}

/// The validated inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// CA certificate (PEM) that signs the agents' server certificates.
    pub ca: PathBuf,
    /// The coordinator's client certificate (PEM).
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// The nodes.
    pub nodes: Vec<InventoryNode>,
}

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems, one per line.
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    address: String,
    role: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InventoryError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Inventory::parse(&text, base).map_err(|problems| InventoryError::Invalid { path: path.to_owned(), problems })
    }

    /// Parses inventory text; relative paths are joined to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Inventory, Vec<String>> {
        let raw: RawInventory = toml::from_str(text).map_err(|error| vec![error.message().to_owned()])?;
        let mut problems = Vec::new();
        let mut nodes: Vec<InventoryNode> = Vec::new();
        for (index, node) in raw.nodes.into_iter().enumerate() {
            let key = |field: &str| format!("nodes[{index}].{field}");
            let name = match node.name.parse::<NodeName>() {
                Ok(name) => Some(name),
                Err(error) => {
                    problems.push(format!("{}: {error}", key("name")));
                    None
                }
            };
            let role = match node.role.as_str() {
                "worker" => Some(NodeRole::Worker),
                "control-plane" => Some(NodeRole::ControlPlane),
                other => {
                    problems.push(format!("{}: must be \"worker\" or \"control-plane\", got {other:?}", key("role")));
                    None
                }
            };
            let address_ok = node.address.parse::<SocketAddr>().is_ok()
                || node
                    .address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !address_ok {
                problems.push(format!("{}: {:?} is not HOST:PORT", key("address"), node.address));
            }
            if let (Some(name), Some(role), true) = (name, role, address_ok) {
                if nodes.iter().any(|n| n.name == name) {
                    problems.push(format!("{}: {name} is listed twice", key("name")));
                } else if nodes.iter().any(|n| n.address == node.address) {
                    problems.push(format!("{}: {} is listed twice", key("address"), node.address));
                } else {
                    nodes.push(InventoryNode { name, address: node.address, role, labels: node.labels });
                }
            }
        }
        if nodes.is_empty() && problems.is_empty() {
            problems.push("nodes: at least one [[nodes]] entry is required".to_owned());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Inventory {
            ca: base.join(raw.ca),
            client_cert: base.join(raw.client_cert),
            client_key: base.join(raw.client_key),
            nodes,
        })
    }

    /// Reads several inventories (shards of one fleet) as one: the TLS files of
    /// the first, the nodes of all, with names and addresses still unique.
    pub fn load_all(paths: &[PathBuf]) -> Result<Inventory, InventoryError> {
        let mut merged: Option<Inventory> = None;
        for path in paths {
            let next = Inventory::load(path)?;
            match &mut merged {
                None => merged = Some(next),
                Some(all) => {
                    let mut problems = Vec::new();
                    for node in next.nodes {
                        if all.nodes.iter().any(|n| n.name == node.name || n.address == node.address) {
                            problems
                                .push(format!("{} ({}) is already in an earlier inventory", node.name, node.address));
                        } else {
                            all.nodes.push(node);
                        }
                    }
                    if !problems.is_empty() {
                        return Err(InventoryError::Invalid { path: path.clone(), problems });
                    }
                }
            }
        }
        merged.ok_or_else(|| InventoryError::Invalid {
            path: PathBuf::new(),
            problems: vec!["no inventory given".to_owned()],
        })
    }

    /// Writes the inventory as TOML (used by `upkeep-sim serve`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
ca = "tls/ca.crt"
client_cert = "tls/ops.crt"
client_key = "/abs/ops.key"

[[nodes]]
name = "cp-1"
address = "127.0.0.2:10265"
role = "control-plane"

[[nodes]]
name = "worker-1"
address = "worker-1.example:10265"
role = "worker"
labels = { zone = "a" }
"#;

    #[test]
    fn parses_nodes_and_resolves_paths() {
        let inventory = Inventory::parse(VALID, Path::new("/etc/upkeep")).expect("valid");
        assert_eq!(inventory.ca, PathBuf::from("/etc/upkeep/tls/ca.crt"));
        assert_eq!(inventory.client_key, PathBuf::from("/abs/ops.key"));
        assert_eq!(inventory.nodes.len(), 2);
        assert_eq!(inventory.nodes[0].role, NodeRole::ControlPlane);
        assert_eq!(inventory.nodes[1].zone(), Some("a"));
        let again = Inventory::parse(&inventory.to_toml(), Path::new("/")).expect("round trip");
        assert_eq!(again, inventory);
    }

    #[test]
    fn every_bad_node_is_named() {
        let text = VALID
            .replace("\"cp-1\"", "\"CP 1\"")
            .replace("\"worker\"", "\"boss\"")
            .replace("127.0.0.2:10265", "nowhere");
        let problems = Inventory::parse(&text, Path::new("/")).expect_err("invalid");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("nodes[0].name"));
        assert!(problems[1].starts_with("nodes[0].address"));
        assert!(problems[2].starts_with("nodes[1].role"));
        let twice = VALID.replace("worker-1.example", "127.0.0.2");
        assert!(Inventory::parse(&twice, Path::new("/")).expect_err("duplicate")[0].contains("listed twice"));
        assert!(Inventory::parse("ca = 1", Path::new("/")).is_err());
    }
}
