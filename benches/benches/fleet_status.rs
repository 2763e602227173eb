//! `upkeep status` throughput: N in-process agents (the real server over the
//! real host, each on its own port), read by the coordinator's fan-out with
//! bounded concurrency over fresh mutual-TLS connections. Agents and the
//! coordinator share this process and its cores.
//!
//! Run: `cargo bench -p upkeep-benches --bench fleet_status`
//! (`UPKEEP_FLEET` sets the number of agents, 1000 by default;
//! `UPKEEP_CONCURRENCY` the fan-out, 64 by default).

use std::time::Instant;

use upkeep_coordinator::client::{AgentClient, ClientSettings, tls_config};
use upkeep_coordinator::inventory::{Inventory, InventoryNode};
use upkeep_coordinator::status::fleet_status;
use upkeep_tests::in_process::InProcessAgent;
use upkeep_tests::pki::Pki;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let size: usize = std::env::var("UPKEEP_FLEET").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let concurrency: usize = std::env::var("UPKEEP_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let pki = Pki::new();
        let started = Instant::now();
        let mut agents = Vec::new();
        for _ in 0..size {
            agents.push(InProcessAgent::start(&pki, "v1.30.2", "").await);
        }
        eprintln!("{size} agents started in {:?}", started.elapsed());
        let reader = pki.client("reader");
        let inventory = Inventory {
            ca: pki.ca_cert(),
            client_cert: reader.cert.clone(),
            client_key: reader.key.clone(),
            nodes: agents
                .iter()
                .enumerate()
                .map(|(i, agent)| InventoryNode {
                    name: format!("node-{i}").parse().expect("valid"),
                    address: agent.addr.to_string(),
                    role: upkeep_common::api::NodeRole::Worker,
                    labels: Default::default(),
                })
                .collect(),
        };
        let tls = tls_config(&inventory.ca, &inventory.client_cert, &inventory.client_key).expect("TLS");
        for round in 1..=3 {
            let client = AgentClient::new(tls.clone(), ClientSettings::default());
            let started = Instant::now();
            let rows = fleet_status(&client, &inventory, concurrency).await;
            let elapsed = started.elapsed();
            let answered = rows.iter().filter(|row| row.state.is_some()).count();
            println!(
                "round {round}: upkeep status over {size} nodes (concurrency {concurrency}): {answered} answered in {elapsed:?}, {:.0} nodes/s",
                size as f64 / elapsed.as_secs_f64()
            );
        }
    });
}
