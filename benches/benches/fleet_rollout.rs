//! A 1,000-node simulated rollout with zero step latency and no faults: the
//! real agents and the real coordinator in one process, end to end (fleet
//! start, calibration, rollout, checks).
//!
//! Run: `cargo bench -p upkeep-benches --bench fleet_rollout`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use upkeep_coordinator::plan::Limit;
use upkeep_simulator::faults::LatencyRange;
use upkeep_simulator::run::{Driver, RunConfig, run};

fn fleet_rollout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let config = RunConfig {
        max_failures: Limit::Count(0),
        latency: LatencyRange { low_ms: 0, high_ms: 0 },
        fault_rate: 0.0,
        poll_interval: Duration::from_millis(5),
        address_offset: 50_000,
        driver: Driver::Cli,
        ..RunConfig::demo(1)
    };
    let mut group = c.benchmark_group("fleet");
    group.sample_size(10).measurement_time(Duration::from_secs(60));
    group.bench_function("1000-node rollout, zero latency", |b| {
        b.iter(|| {
            let report = runtime.block_on(run(&config)).expect("the run completes");
            assert!(report.checks.passed, "{:?}", report.checks.violations);
            report.counters.patched
        })
    });
    group.finish();
}

criterion_group!(benches, fleet_rollout);
criterion_main!(benches);
