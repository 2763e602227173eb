//! Load on `GET /v1/node`: a fixed number of kept-alive mutual-TLS connections,
//! each sending requests back to back for a fixed time; prints requests per
//! second and latency percentiles. Server and clients share this process and
//! its two cores, so the figures are a floor for a dedicated agent.
//!
//! Run: `cargo bench -p upkeep-benches --bench node_api_load`
//! (`UPKEEP_LOAD_CONNECTIONS` and `UPKEEP_LOAD_SECONDS` change the defaults, 8 and 5).

use std::time::{Duration, Instant};

use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::in_process::InProcessAgent;
use upkeep_tests::pki::Pki;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let connections = setting("UPKEEP_LOAD_CONNECTIONS", 8);
    let seconds = setting("UPKEEP_LOAD_SECONDS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let pki = Pki::new();
        let agent = InProcessAgent::start(&pki, "v1.30.2", "").await;
        let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut workers = Vec::new();
        let started = Instant::now();
        for _ in 0..connections {
            let config = config.clone();
            let addr = agent.addr;
            workers.push(tokio::spawn(async move {
                let mut client = ApiClient::connect(addr, config).await.expect("connects");
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let reply = client.get("/v1/node").await.expect("reply");
                    assert_eq!(reply.status, 200);
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await.expect("worker"));
        }
        let wall = started.elapsed();
        latencies.sort();
        println!(
            "GET /v1/node over {connections} kept-alive mTLS connections for {seconds} s: {} requests, {:.0} req/s, \
             p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            latencies.len() as f64 / wall.as_secs_f64(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default(),
        );
    });
}
