//! `upkeep-sim serve`: host one shard of a fleet in this process, with no
//! coordinator, and write the shard's inventory and the artifacts file, so
//! several processes (or machines) can host a large fleet that one `upkeep`
//! drives with every shard's inventory.

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;

use upkeep_common::Version;
use upkeep_coordinator::inventory::Inventory;

use crate::faults::{FaultKind, LatencyRange};
use crate::fleet::{Fleet, FleetError, FleetPki, FleetSpec};
use crate::host::target_artifact;

/// What one shard hosts.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Nodes in the whole fleet.
    pub nodes: usize,
    /// Control-plane nodes among them (the first ones).
    pub control_planes: usize,
    /// Zones the nodes are spread over.
    pub zones: usize,
    /// This shard (0-based) and the number of shards.
    pub shard: (usize, usize),
    /// Where the shared CA, the coordinator's certificate, the inventories and
    /// the artifacts file live.
    pub dir: PathBuf,
    /// The version the nodes start at.
    pub from: Version,
    /// The version the simulated control plane reports and the artifact installs.
    pub to: Version,
    /// The fault plan's seed.
    pub seed: u64,
    /// The probability that a node has a fault.
    pub fault_rate: f64,
    /// The kinds faults are drawn from.
    pub fault_kinds: Vec<FaultKind>,
    /// Each node's step latency range.
    pub latency: LatencyRange,
}

/// The node indexes shard `index` of `count` hosts.
pub fn shard_range(nodes: usize, index: usize, count: usize) -> Range<usize> {
    let count = count.max(1);
    (nodes * index / count)..(nodes * (index + 1) / count)
}

/// Starts the shard, writes `DIR/inventory-INDEX.toml`, `DIR/artifacts.toml`
/// (the kubelet alone) and `DIR/catalog.toml` (the release with the control
/// plane's static-pod images, for `upkeep rollout --catalog`),
/// serves until `shutdown` completes, and returns the inventory's path.
pub async fn serve(
    config: &ServeConfig,
    ready: impl FnOnce(&PathBuf),
    shutdown: impl Future<Output = ()>,
) -> Result<(), FleetError> {
    let (index, count) = config.shard;
    let hosted = shard_range(config.nodes, index, count);
    let (artifact, artifacts) = target_artifact(&config.to);
    let pki = FleetPki::shared(&config.dir)?;
    let spec = FleetSpec {
        nodes: config.nodes,
        control_planes: config.control_planes.min(config.nodes),
        zones: config.zones,
        from: config.from.clone(),
        target: config.to.clone(),
        address_offset: 0,
        hosted,
    };
    let plan = spec.fault_plan(config.seed, config.fault_rate, &config.fault_kinds, config.latency);
    let mut fleet = Fleet::start(&spec, &plan, artifacts, pki).await?;
    let write = |path: &PathBuf, text: String| {
        upkeep_coordinator::certs::write_file(path, &text, 0o644, true).map_err(FleetError::from)
    };
    let inventory_path = config.dir.join(format!("inventory-{index}.toml"));
    // Written, then not kept: the shard has no use for its nodes' names and addresses after.
    let nodes = std::mem::take(&mut fleet.inventory.nodes);
    write(&inventory_path, beside_its_files(Inventory { nodes, ..fleet.inventory.clone() }).to_toml())?;
    let artifacts_file = format!(
        "[[artifacts]]\ncomponent = \"{}\"\nsource = \"{}\"\nsha256 = \"{}\"\n",
        artifact.component, artifact.source, artifact.sha256
    );
    write(&config.dir.join("artifacts.toml"), artifacts_file)?;
    let images = match spec.control_planes {
        0 => Vec::new(),
        _ => crate::static_pods::release_images(&config.to),
    };
    write(&config.dir.join("catalog.toml"), crate::catalog::one_release(&config.to, &images))?;
    let crash_watchers = fleet.restart_crashed_agents();
    ready(&inventory_path);
    shutdown.await;
    for task in crash_watchers {
        task.abort();
    }
    fleet.shutdown().await;
    Ok(())
}

/// The inventory as written into the fleet's directory, beside the TLS files
/// it names: an inventory's paths are read relative to the inventory file, so
/// it names them by file name alone, whatever `--dir` was relative to.
fn beside_its_files(inventory: Inventory) -> Inventory {
    let file_name = |path: &PathBuf| path.file_name().map_or_else(|| path.clone(), PathBuf::from);
    Inventory {
        ca: file_name(&inventory.ca),
        client_cert: file_name(&inventory.client_cert),
        client_key: file_name(&inventory.client_key),
        ..inventory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_fleet_once() {
        let ranges: Vec<Range<usize>> = (0..3).map(|i| shard_range(10, i, 3)).collect();
        assert_eq!(ranges, vec![0..3, 3..6, 6..10]);
        assert_eq!(shard_range(5, 0, 1), 0..5);
    }
}
