//! The fleet of fake nodes: each is the real agent (server, authorization,
//! engine) over a simulated [`Machine`], listening on its own loopback address
//! (127.a.b.c) with its own server certificate. A crashed agent is restarted
//! from its saved state; an unreachable node stops answering for a while.
//! Control-plane nodes also manage kubeadm's four static pods.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upkeep_agent::app::App;
use upkeep_agent::config::AgentConfig;
use upkeep_agent::server;
use upkeep_agent::store::Store;
use upkeep_common::Version;
use upkeep_common::api::NodeRole;
use upkeep_common::ids::NodeName;
use upkeep_coordinator::certs::{self, Validity};
use upkeep_coordinator::inventory::{Inventory, InventoryNode};
use upkeep_net::ServerCredentials;
use upkeep_net::tls::{parse_certificates, parse_private_key, server_config};

use crate::availability::Unavailability;
use crate::control_plane::ControlPlaneLog;
use crate::faults::{FaultKind, FaultPlan, LatencyRange};
use crate::host::{ArtifactStore, Machine};
pub use crate::pki::FleetPki;

/// The port every fake node listens on (each on its own address).
pub const NODE_PORT: u16 = 10265;

/// Where the simulated kubelet lives on every machine.
pub const KUBELET: &str = "/usr/bin/kubelet";

/// Why the fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Certificates could not be made or written.
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    /// A node's TLS or config was refused.
    #[error("node setup: {0}")]
    Setup(String),
    /// A node's address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The loopback address of node `index` (127.a.b.c, never .0 or .255 in the last byte,
/// and never 127.0.0.x so the machine's own services stay apart).
pub fn node_address(index: usize) -> SocketAddr {
    let c = (index % 254) as u8 + 1;
    let b = ((index / 254) % 256) as u8;
    let a = (index / (254 * 256)) as u8 + 1;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, a, b, c), NODE_PORT))
}

/// A running agent: its state and, while the node answers, the server task in front of it.
struct Running {
    app: Arc<App>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// One fake node.
pub struct SimNode {
    /// Its index in the fleet.
    pub index: usize,
    /// Its name.
    pub name: NodeName,
    /// Its address.
    pub addr: SocketAddr,
    /// Its role.
    pub role: NodeRole,
    /// Its zone label.
    pub zone: String,
    /// Its simulated machine.
    pub machine: Arc<Machine>,
    /// The version it started at.
    pub initial: Version,
    /// Shared with the running agent, and kept for its restarts.
    config: Arc<AgentConfig>,
    tls: Arc<ServerCredentials>,
    store: Store,
    running: Mutex<Option<Running>>,
}

impl SimNode {
    /// The agent now running on the node.
    pub fn app(&self) -> Option<Arc<App>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|r| r.app.clone())
    }

    /// Starts the agent (loading its saved state) and its server.
    pub async fn start(&self) -> Result<(), FleetError> {
        let app = Arc::new(
            App::new(Arc::clone(&self.config), self.machine.host(), self.store.clone())
                .map_err(|e| FleetError::Setup(e.to_string()))?,
        );
        app.start().await;
        let server = self.serve(app.clone()).await?;
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { app, server: Some(server) });
        Ok(())
    }

    async fn serve(&self, app: Arc<App>) -> Result<(oneshot::Sender<()>, JoinHandle<()>), FleetError> {
        let listener = bind(self.addr).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, self.tls.clone(), app, async {
            let _ = stopped.await;
        }));
        Ok((stop, server))
    }

    /// Stops answering (the listener closes, connections drop); the agent keeps working.
    pub async fn go_offline(&self) {
        let server = self.running.lock().unwrap_or_else(|p| p.into_inner()).as_mut().and_then(|r| r.server.take());
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            task.abort();
            let _ = task.await;
        }
    }

    /// Answers again.
    pub async fn go_online(&self) -> Result<(), FleetError> {
        let Some(app) = self.app() else { return Ok(()) };
        let server = self.serve(app).await?;
        if let Some(running) = self.running.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            running.server = Some(server);
        }
        Ok(())
    }

    /// Stops the server and forgets the agent, as a killed process would.
    pub async fn stop(&self) {
        self.go_offline().await;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(running) = running {
            running.app.engine.stop();
        }
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, FleetError> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(FleetError::Listen { address, source: last.unwrap_or_else(|| std::io::Error::other("bind failed")) })
}

/// What the fleet looks like.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// How many nodes.
    pub nodes: usize,
    /// How many of them (the first ones) run the control plane.
    pub control_planes: usize,
    /// Zones the workers are spread over.
    pub zones: usize,
    /// The version every node starts at.
    pub from: Version,
    /// The rollout's target (the API server's version when no machine runs one).
    pub target: Version,
    /// Node `i` listens on the address of index `i + address_offset`, so
    /// several fleets can share the machine.
    pub address_offset: usize,
    /// The nodes this process hosts (all of them unless the fleet is sharded).
    pub hosted: std::ops::Range<usize>,
}

impl FleetSpec {
    /// The faults and step latencies of this fleet's nodes, drawn from `seed`
    /// (control-plane-only kinds go to the control-plane nodes alone).
    pub fn fault_plan(&self, seed: u64, fault_rate: f64, kinds: &[FaultKind], latency: LatencyRange) -> FaultPlan {
        FaultPlan::derive(seed, self.nodes, self.control_planes, fault_rate, kinds, latency)
    }
}

/// The fleet.
pub struct Fleet {
    /// Its nodes, in inventory order.
    pub nodes: Vec<Arc<SimNode>>,
    /// The inventory the coordinator uses.
    pub inventory: Inventory,
    /// Every cordon and uncordon of the fleet's Nodes, as the machines saw them.
    pub unavailability: Arc<Unavailability>,
    /// What the fleet's control plane and kubelets ran over time, as the machines saw it.
    pub control_plane: Arc<ControlPlaneLog>,
    /// The fleet's PKI.
    pub pki: FleetPki,
}

impl Fleet {
    /// Requests the fleet's agents have answered, each since it last started.
    pub fn requests_served(&self) -> u64 {
        self.nodes.iter().filter_map(|node| node.app()).map(|app| app.metrics.server.requests_served()).sum()
    }

    /// Starts every node of `spec` with the machines `plan` describes.
    pub async fn start(
        spec: &FleetSpec,
        plan: &FaultPlan,
        artifacts: ArtifactStore,
        pki: FleetPki,
    ) -> Result<Fleet, FleetError> {
        let ca = &pki.ca;
        let ca_der = pem_certificates(ca.cert_pem())?;
        let mut nodes = Vec::with_capacity(spec.hosted.len());
        let unavailability = Arc::new(Unavailability::default());
        let control_plane = Arc::new(ControlPlaneLog::default());
        for index in spec.hosted.clone() {
            let role = if index < spec.control_planes { NodeRole::ControlPlane } else { NodeRole::Worker };
            let name: NodeName = match role {
                NodeRole::ControlPlane => format!("cp-{index}"),
                NodeRole::Worker => format!("worker-{index}"),
            }
            .parse()
            .map_err(|e: upkeep_common::ids::IdError| FleetError::Setup(e.to_string()))?;
            let addr = node_address(index + spec.address_offset);
            let issued = ca.issue_server(name.as_str(), &[addr.ip().to_string()], Validity::days_from_now(2))?;
            let chain = pem_certificates(&issued.cert_pem)?;
            let key = parse_private_key(issued.key_pem.as_bytes()).map_err(|e| FleetError::Setup(e.to_string()))?;
            let tls = server_config(ca_der.clone(), chain, key).map_err(|e| FleetError::Setup(e.to_string()))?;
            let machine = Arc::new(
                Machine::new(
                    Path::new(KUBELET),
                    &spec.from,
                    plan.nodes[index].clone(),
                    artifacts.clone(),
                    spec.target.clone(),
                )
                .reporting_to(unavailability.clone(), index)
                .in_fleet(
                    name.as_str(),
                    control_plane.clone(),
                    role == NodeRole::ControlPlane,
                    &spec.from,
                ),
            );
            nodes.push(Arc::new(SimNode {
                index,
                config: Arc::new(crate::node_config::node_config(&name, role, addr)?),
                name,
                addr,
                role,
                zone: format!("zone-{}", index % spec.zones.max(1)),
                machine,
                initial: spec.from.clone(),
                tls: Arc::new(ServerCredentials::fixed(tls)),
                store: Store::memory(),
                running: Mutex::new(None),
            }));
        }
        for node in &nodes {
            node.start().await?;
        }
        let inventory = Inventory {
            ca: pki.dir.join("ca.crt"),
            client_cert: pki.dir.join("coordinator.crt"),
            client_key: pki.dir.join("coordinator.key"),
            nodes: nodes
                .iter()
                .map(|node| InventoryNode {
                    name: node.name.clone(),
                    address: node.addr.to_string(),
                    role: node.role,
                    labels: [("zone".to_owned(), node.zone.clone())].into_iter().collect(),
                })
                .collect(),
        };
        Ok(Fleet { nodes, inventory, unavailability, control_plane, pki })
    }

    /// Watches for crashed agents and restarts them from their saved state.
    pub fn restart_crashed_agents(&self) -> Vec<JoinHandle<()>> {
        self.nodes
            .iter()
            .filter(|node| node.machine.plan().fault == Some(crate::faults::FaultKind::AgentCrash))
            .map(|node| {
                let node = node.clone();
                tokio::spawn(async move {
                    node.machine.crashed.notified().await;
                    node.stop().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Err(error) = node.start().await {
                        tracing::error!(node = %node.name, %error, "a crashed agent could not restart");
                    }
                })
            })
            .collect()
    }

    /// Takes unreachable nodes offline for their planned outage, once.
    pub fn schedule_outages(&self) -> Vec<JoinHandle<()>> {
        self.nodes
            .iter()
            .filter_map(|node| node.machine.plan().outage.map(|outage| (node.clone(), outage)))
            .map(|(node, (after_ms, for_ms))| {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                    node.go_offline().await;
                    tokio::time::sleep(Duration::from_millis(for_ms)).await;
                    if let Err(error) = node.go_online().await {
                        tracing::error!(node = %node.name, %error, "an unreachable node could not come back");
                    }
                })
            })
            .collect()
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for node in &self.nodes {
            node.stop().await;
        }
    }
}

fn pem_certificates(pem: &str) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, FleetError> {
    parse_certificates(pem.as_bytes(), "certificate").map_err(|e| FleetError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_distinct_loopback_addresses() {
        let addresses: std::collections::HashSet<_> = (0..200_000).map(node_address).collect();
        assert_eq!(addresses.len(), 200_000);
        for index in [0, 253, 254, 65_000, 199_999] {
            let SocketAddr::V4(v4) = node_address(index) else { panic!("IPv4") };
            let [first, a, _, c] = v4.ip().octets();
            assert_eq!(first, 127);
            assert!(a >= 1 && (1..=254).contains(&c), "{v4}");
        }
    }
}
