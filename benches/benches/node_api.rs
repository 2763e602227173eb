//! One request through the in-process agent server over mutual TLS: on a
//! kept-alive connection, and with a fresh handshake each time.
//!
//! Run: `cargo bench -p upkeep-benches --bench node_api`

use criterion::{Criterion, criterion_group, criterion_main};
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::in_process::InProcessAgent;
use upkeep_tests::pki::Pki;

fn node_api(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let pki = Pki::new();
    let agent = runtime.block_on(InProcessAgent::start(&pki, "v1.30.2", ""));
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let mut client = runtime.block_on(ApiClient::connect(agent.addr, config.clone())).expect("connects");

    c.bench_function("GET /v1/node, kept-alive mTLS", |b| {
        b.iter(|| runtime.block_on(async { client.get("/v1/node").await.expect("reply").status }))
    });
    c.bench_function("mTLS handshake + GET /v1/node", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut fresh = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
                fresh.get("/v1/node").await.expect("reply").status
            })
        })
    });
    // The first connection sat idle through the handshakes, past the agent's idle timeout.
    let mut client = runtime.block_on(ApiClient::connect(agent.addr, config.clone())).expect("connects");
    c.bench_function("GET /healthz, kept-alive mTLS", |b| {
        b.iter(|| runtime.block_on(async { client.get("/healthz").await.expect("reply").status }))
    });
    drop(agent);
}

criterion_group!(benches, node_api);
criterion_main!(benches);
