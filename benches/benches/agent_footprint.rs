//! The agent's memory footprint: the real `upkeep-agent` process as shipped
//! (the `dist` profile, built for size; the bench builds it), read from
//! `/proc/PID/status` once it is idle after serving a few requests, and again
//! with many idle client connections open.
//!
//! `cargo bench -p upkeep-benches --bench agent_footprint`

use std::time::Duration;

use upkeep_tests::agent_process::{AgentProcess, AgentSetup};
use upkeep_tests::binaries;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::pki::Pki;

/// Resident and peak resident memory of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let (now, peak) = upkeep_simulator::report::memory_of(&pid.to_string());
    (now / 1024, peak / 1024)
}

/// The process's resident memory by kind (anonymous, file-backed, shared), from `/proc/PID/status`.
fn rss_parts(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|line| ["RssAnon:", "RssFile:", "RssShmem:"].iter().any(|key| line.starts_with(key)))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pki = Pki::new();
    let agent = AgentProcess::start_binary(&binaries::shipped_agent(), &pki, &AgentSetup::kubelet("v1.30.2"));
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let (started, _) = memory_kib(agent.pid());
    runtime.block_on(async {
        let mut client = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
        for path in ["/v1/node", "/v1/operations", "/metrics", "/healthz"] {
            client.get(path).await.expect("a reply");
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let (idle, peak) = memory_kib(agent.pid());
    println!("agent_footprint/idle_rss: {idle} KiB (just started {started} KiB, peak {peak} KiB)");
    println!("agent_footprint/idle_rss_parts: {}", rss_parts(agent.pid()));
    let held = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..100 {
            let mut client = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
            client.get("/v1/node").await.expect("a reply");
            clients.push(client);
        }
        clients
    });
    let (with_connections, _) = memory_kib(agent.pid());
    println!(
        "agent_footprint/rss_with_100_idle_connections: {with_connections} KiB ({:.1} KiB per connection)",
        with_connections.saturating_sub(idle) as f64 / 100.0
    );
    drop(held);
}
