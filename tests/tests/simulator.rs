//! The fleet simulator end to end, in process: a small fleet with every fault
//! kind passes its checks, the same seed gives the same per-node outcomes, and a
//! coordinator that overshoots its limit (a test double) is caught.

use std::collections::BTreeMap;
use std::time::Duration;

use upkeep_coordinator::plan::Limit;
use upkeep_simulator::faults::{FaultKind, FaultPlan, LatencyRange};
use upkeep_simulator::run::{Driver, RunConfig, run};

fn config(nodes: usize, seed: u64, address_offset: usize) -> RunConfig {
    RunConfig {
        nodes,
        control_planes: 0,
        max_unavailable: Limit::Count(12),
        max_failures: Limit::Percent(100),
        latency: LatencyRange { low_ms: 1, high_ms: 10 },
        fault_rate: 1.0,
        concurrency: 16,
        poll_interval: Duration::from_millis(10),
        address_offset,
        driver: Driver::Cli,
        ..RunConfig::demo(seed)
    }
}

/// The seed of the every-fault run.
const SEED: u64 = 1;

/// The faults seed 1 gives a fleet of 32 with every node faulty, node by node,
/// written out here: the plan is checked against it, and the expected
/// outcomes follow from it, not from the simulator's own code.
const SEED_1_FAULTS: [&str; 32] = [
    "agent-crash",
    "slow-node",
    "drain-blocked-for-good",
    "slow-node",
    "drain-blocked-for-good",
    "corrupt-artifact",
    "service-wont-start",
    "drain-blocked-for-good",
    "unreachable",
    "agent-crash",
    "hung-step",
    "hung-step",
    "drain-blocked-for-good",
    "slow-node",
    "unreachable",
    "hung-step",
    "agent-crash",
    "hung-step",
    "drain-blocked-for-good",
    "service-wont-start",
    "unreachable",
    "service-wont-start",
    "corrupt-artifact",
    "corrupt-artifact",
    "drain-blocked-for-a-while",
    "unreachable",
    "agent-crash",
    "service-wont-start",
    "drain-blocked-for-a-while",
    "agent-crash",
    "agent-crash",
    "slow-node",
];

/// What a node with `fault` must end as, in the report's words: the step and
/// code of its error, or patched for the faults a node recovers from.
fn expected_outcome(fault: &str) -> &'static str {
    match fault {
        "corrupt-artifact" => "error Stage checksum_mismatch",
        "service-wont-start" => "error PostCheck health_check_failed",
        "hung-step" => "error Restart step_timeout",
        "drain-blocked-for-good" => "error Drain drain_blocked",
        "agent-crash" | "unreachable" | "drain-blocked-for-a-while" | "slow-node" => "patched",
        other => panic!("a fault this test does not know: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_ends_as_its_fault_says_and_the_checks_hold() {
    let nodes = SEED_1_FAULTS.len();
    let plan = FaultPlan::derive(SEED, nodes, 0, 1.0, &FaultKind::ALL, LatencyRange { low_ms: 1, high_ms: 10 });
    let planned: Vec<String> = plan.nodes.iter().map(|n| n.fault.map(|f| f.to_string()).unwrap_or_default()).collect();
    assert_eq!(planned, SEED_1_FAULTS, "seed {SEED} no longer gives the plan this test was written for");
    for kind in FaultKind::ALL.into_iter().filter(|kind| !kind.control_plane_only()) {
        assert!(SEED_1_FAULTS.contains(&kind.to_string().as_str()), "{kind} is not in the plan");
    }

    let report = run(&config(nodes, SEED, 0)).await.expect("the run completes");
    assert!(report.checks.passed, "seed {SEED}: {:#?}", report.checks.violations);
    let expected: BTreeMap<String, String> = SEED_1_FAULTS
        .iter()
        .enumerate()
        .map(|(index, fault)| (format!("worker-{index}"), expected_outcome(fault).to_owned()))
        .collect();
    assert_eq!(report.outcomes, expected, "seed {SEED}");
    let errors = expected.values().filter(|outcome| outcome.starts_with("error")).count();
    assert_eq!(errors, 16, "the table above has 16 faults that end in error");
    assert_eq!(report.counters.error, errors, "seed {SEED}");
    assert_eq!(report.counters.patched, nodes - errors, "seed {SEED}");
    assert!(report.peak_unavailable <= 12, "peak {}", report.peak_unavailable);
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
