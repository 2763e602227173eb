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
//! Relative paths are read relative to the inventory file. Addresses are kept
//! in a normal form (`127.0.3.4:010265` is `127.0.3.4:10265`, host names in
//! lower case), so one machine is listed once; every problem names the node
//! entry and its line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use upkeep_common::api::NodeRole;
use upkeep_common::ids::NodeName;

use crate::toml_problems::Lines;

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
    nodes: Vec<toml::Spanned<RawNode>>,
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
        let lines = Lines::of(text);
        let raw: RawInventory = toml::from_str(text).map_err(|error| {
            let at = error.span().map(|span| format!("line {}: ", lines.line_of(span.start))).unwrap_or_default();
            vec![format!("{at}{}", error.message().trim_end())]
        })?;
        let mut problems = Vec::new();
        let mut nodes: Vec<InventoryNode> = Vec::new();
        let mut names: HashSet<NodeName> = HashSet::new();
        let mut addresses: HashMap<String, NodeName> = HashMap::new();
        for (index, spanned) in raw.nodes.into_iter().enumerate() {
            let line = lines.line_of(spanned.span().start);
            let node = spanned.into_inner();
            let key = |field: &str| format!("nodes[{index}].{field} (line {line})");
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
            let address = match normal_address(&node.address) {
                Ok(address) => Some(address),
                Err(why) => {
                    problems.push(format!("{}: {:?} {why}", key("address"), node.address));
                    None
                }
            };
            if let (Some(name), Some(role), Some(address)) = (name, role, address) {
                if names.contains(&name) {
                    problems.push(format!("{}: {name} is listed twice", key("name")));
                } else if let Some(other) = addresses.get(&address) {
                    problems.push(format!("{}: {address} is already {other}'s address", key("address")));
                } else {
                    names.insert(name.clone());
                    addresses.insert(address.clone(), name.clone());
                    nodes.push(InventoryNode { name, address, role, labels: node.labels });
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
    /// the first, the nodes of all, with names and addresses still unique (in
    /// time linear in the nodes).
    pub fn load_all(paths: &[PathBuf]) -> Result<Inventory, InventoryError> {
        let mut merged: Option<Inventory> = None;
        let mut names: HashSet<NodeName> = HashSet::new();
        let mut addresses: HashSet<String> = HashSet::new();
        let mut seen: Vec<(PathBuf, &PathBuf)> = Vec::new();
        for path in paths {
            let same_file = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            if let Some((_, first)) = seen.iter().find(|(file, _)| *file == same_file) {
                let problem = format!("this inventory is given twice (first as {})", first.display());
                return Err(InventoryError::Invalid { path: path.clone(), problems: vec![problem] });
            }
            seen.push((same_file, path));
            let next = Inventory::load(path)?;
            match &mut merged {
                None => {
                    names.extend(next.nodes.iter().map(|n| n.name.clone()));
                    addresses.extend(next.nodes.iter().map(|n| n.address.clone()));
                    merged = Some(next);
                }
                Some(all) => {
                    let mut problems = Vec::new();
                    let count = next.nodes.len();
                    for node in next.nodes {
                        if names.contains(&node.name) || addresses.contains(&node.address) {
                            problems
                                .push(format!("{} ({}) is already in an earlier inventory", node.name, node.address));
                        } else {
                            names.insert(node.name.clone());
                            addresses.insert(node.address.clone());
                            all.nodes.push(node);
                        }
                    }
                    if count > 1 && problems.len() == count {
                        problems = vec![format!(
                            "all {count} nodes are already in an earlier inventory (the same fleet given twice?)"
                        )];
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

/// An agent address in its normal form: `IP:PORT` as the standard library
/// writes it (`[v6]:PORT` for IPv6, no leading zeros), or a host name in lower
/// case without a trailing dot and the port as a number.
pub fn normal_address(text: &str) -> Result<String, &'static str> {
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return if socket.port() == 0 { Err("has port 0") } else { Ok(socket.to_string()) };
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("is not HOST:PORT");
    };
    let port: u16 = match port.parse() {
        Ok(0) => return Err("has port 0"),
        Ok(port) => port,
        Err(_) => return Err("is not HOST:PORT (the port is a number from 1 to 65535)"),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("is not HOST:PORT (the host is an IP address or a DNS name)");
    }
    if host.parse::<std::net::IpAddr>().is_err() && host.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err("is not HOST:PORT (not a valid IPv4 address)");
    }
    Ok(format!("{host}:{port}"))
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
        let problem = &Inventory::parse(&twice, Path::new("/")).expect_err("duplicate")[0];
        assert!(problem.contains("127.0.0.2:10265 is already cp-1's address"), "{problem}");
        assert!(Inventory::parse("ca = 1", Path::new("/")).is_err());
    }

    #[test]
    fn problems_name_the_entry_and_its_line() {
        let text = VALID.replace("\"worker\"", "\"boss\"");
        let problems = Inventory::parse(&text, Path::new("/")).expect_err("invalid");
        let line = VALID.lines().position(|l| l.contains("name = \"worker-1\"")).expect("worker-1's entry") + 1;
        assert_eq!(
            problems,
            [format!("nodes[1].role (line {}): must be \"worker\" or \"control-plane\", got \"boss\"", line - 1)]
        );
        let broken = Inventory::parse(
            "ca = \"a\"\nclient_cert = \"b\"\nclient_key = \"c\"\n[[nodes]]\nname = \n",
            Path::new("/"),
        )
        .expect_err("bad TOML");
        assert!(broken[0].starts_with("line 5: "), "{broken:?}");
    }

    #[test]
    fn one_machine_is_one_node_whatever_the_spelling() {
        assert_eq!(normal_address("127.0.3.4:010265"), Ok("127.0.3.4:10265".to_owned()));
        assert_eq!(normal_address("[0:0::1]:0443"), Ok("[::1]:443".to_owned()));
        assert_eq!(normal_address("Worker-1.Example.:10265"), Ok("worker-1.example:10265".to_owned()));
        for bad in ["127.000.3.4:1", "nowhere", "host:0", "host:65536", "exa mple:1", ":1", "-a.b:1", "1.2.3:1"] {
            assert!(normal_address(bad).is_err(), "{bad} was accepted");
        }
        let two = VALID.replace("worker-1.example:10265", "127.0.0.2:010265");
        let problem = &Inventory::parse(&two, Path::new("/")).expect_err("one machine twice")[0];
        assert!(problem.contains("127.0.0.2:10265 is already cp-1's address"), "{problem}");
    }

    #[test]
    fn a_repeated_inventory_is_one_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("fleet.toml");
        std::fs::write(&first, VALID).expect("write");
        let copy = dir.path().join("copy.toml");
        std::fs::write(&copy, VALID).expect("write");
        let same = Inventory::load_all(&[first.clone(), dir.path().join(".").join("fleet.toml")]).expect_err("twice");
        let InventoryError::Invalid { problems, .. } = &same else { panic!("{same}") };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("given twice"), "{problems:?}");
        let copied = Inventory::load_all(&[first, copy]).expect_err("a copy");
        let InventoryError::Invalid { problems, .. } = &copied else { panic!("{copied}") };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("all 2 nodes"), "{problems:?}");
    }
}
