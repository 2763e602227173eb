//! The fleet simulator end to end, in process: a small fleet with every fault
//! kind passes its checks, the same seed gives the same per-node outcomes, and a
//! coordinator that overshoots its limit (a test double) is caught.

use std::time::Duration;

use upkeep_coordinator::plan::Limit;
use upkeep_simulator::faults::{FaultKind, FaultPlan, LatencyRange};
use upkeep_simulator::run::{RunConfig, run};

fn config(nodes: usize, seed: u64, address_offset: usize) -> RunConfig {
    RunConfig {
        nodes,
        control_planes: 0,
        zones: 3,
        seed,
        from: "v1.30.2".parse().expect("valid"),
        to: "v1.30.3".parse().expect("valid"),
        max_unavailable: Limit::Count(12),
        max_failures: Limit::Percent(100),
        per_zone: None,
        prestage: false,
        latency: LatencyRange { low_ms: 1, high_ms: 10 },
        fault_rate: 1.0,
        fault_kinds: FaultKind::ALL.to_vec(),
        concurrency: 16,
        poll_interval: Duration::from_millis(10),
        limit_overshoot: 0,
        progress: false,
        address_offset,
    }
}

/// The first seed whose plan has every fault kind.
fn seed_with_every_fault(nodes: usize) -> u64 {
    (1..1000)
        .find(|&seed| {
            let plan = FaultPlan::derive(seed, nodes, 1.0, &FaultKind::ALL, LatencyRange { low_ms: 1, high_ms: 10 });
            plan.counts().len() == FaultKind::ALL.len()
        })
        .expect("a seed with every fault kind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_and_the_checks_hold() {
    let nodes = 32;
    let seed = seed_with_every_fault(nodes);
    let report = run(&config(nodes, seed, 0)).await.expect("the run completes");
    assert!(report.checks.passed, "seed {seed}: {:#?}", report.checks.violations);
    assert_eq!(report.faults.len(), FaultKind::ALL.len(), "{:?}", report.faults);
    let plan = FaultPlan::derive(seed, nodes, 1.0, &FaultKind::ALL, LatencyRange { low_ms: 1, high_ms: 10 });
    let expected_errors = plan.nodes.iter().filter(|n| n.fault.is_some_and(FaultKind::ends_in_error)).count();
    assert_eq!(report.counters.error, expected_errors, "seed {seed}: {:?}", report.outcomes);
    assert_eq!(report.counters.patched, nodes - expected_errors, "seed {seed}: {:?}", report.outcomes);
    assert!(report.peak_unavailable <= 12);
    let codes: Vec<&str> = report.errors.iter().map(|e| e.code.as_str()).collect();
    for code in ["checksum_mismatch", "health_check_failed", "drain_blocked"] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_outcomes() {
    let first = run(&config(24, 42, 1000)).await.expect("first run");
    let second = run(&config(24, 42, 2000)).await.expect("second run");
    assert_eq!(first.outcomes, second.outcomes);
    assert_eq!(first.counters, second.counters);
    assert!(first.checks.passed && second.checks.passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_overshoots_its_limit_is_caught() {
    let mut overshoot = config(30, 7, 3000);
    overshoot.fault_rate = 0.0;
    overshoot.concurrency = 16;
    overshoot.max_unavailable = Limit::Count(2);
    overshoot.limit_overshoot = 6;
    overshoot.latency = LatencyRange { low_ms: 30, high_ms: 40 };
    let report = run(&overshoot).await.expect("the run completes");
    assert!(!report.checks.passed, "peak {} with a limit of 2", report.peak_unavailable);
    assert!(
        report.checks.violations.iter().any(|v| v.check == "unavailable_within_limit"),
        "{:?}",
        report.checks.violations
    );
}
