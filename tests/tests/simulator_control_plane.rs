//! The fleet simulator's control planes of static pods, end to end in
//! process: three control-plane nodes run kubeadm's four static pods, the
//! rollout upgrades them node after node before any kubelet, and the checks
//! hold; a crash-looping image is rolled back and an image that cannot be
//! pulled changes nothing, each stopping the rollout at the first
//! control-plane node; kubelets driven without the static pods (a test
//! double) are caught by the skew check; a node whose static pods went
//! through before the rollout stopped is pending, not failed.

use std::collections::BTreeMap;
use std::time::Duration;

use upkeep_coordinator::plan::Limit;
use upkeep_simulator::faults::{FaultKind, LatencyRange};
use upkeep_simulator::report::Report;
use upkeep_simulator::run::{Driver, RunConfig, run};

/// Control-plane nodes in every run here.
const CONTROL_PLANES: usize = 3;
/// Workers in every run here.
const WORKERS: usize = 20;

fn config(address_offset: usize) -> RunConfig {
    RunConfig {
        nodes: CONTROL_PLANES + WORKERS,
        control_planes: CONTROL_PLANES,
        to: "v1.31.0".parse().expect("valid"),
        max_unavailable: Limit::Count(5),
        max_failures: Limit::Percent(100),
        latency: LatencyRange { low_ms: 1, high_ms: 20 },
        fault_rate: 0.0,
        concurrency: 16,
        poll_interval: Duration::from_millis(10),
        address_offset,
        driver: Driver::Cli,
        ..RunConfig::demo(11)
    }
}

/// The outcomes when the first control-plane node ends with `cp_0` and
/// stops the rollout: every other node is left pending.
fn stopped_at_the_first_control_plane_node(cp_0: &str) -> BTreeMap<String, String> {
    let mut outcomes: BTreeMap<String, String> = (1..CONTROL_PLANES)
        .map(|index| format!("cp-{index}"))
        .chain((CONTROL_PLANES..CONTROL_PLANES + WORKERS).map(|index| format!("worker-{index}")))
        .map(|name| (name, "pending".to_owned()))
        .collect();
    outcomes.insert("cp-0".to_owned(), cp_0.to_owned());
    outcomes
}

fn checks(report: &Report) -> Vec<&'static str> {
    report.checks.violations.iter().map(|violation| violation.check).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_go_first_through_the_service_and_no_kubelet_outruns_an_api_server() {
    let mut clean = config(12_000);
    clean.driver = Driver::Service;
    let report = run(&clean).await.expect("the run completes");
    assert!(report.checks.passed, "{:#?}", report.checks.violations);
    assert_eq!(report.counters.patched, CONTROL_PLANES + WORKERS);
    let control_plane = &report.control_plane;
    assert_eq!(control_plane.static_pods_upgraded, CONTROL_PLANES, "{control_plane:?}");
    assert_eq!(control_plane.static_pods_rolled_back, 0);
    assert!(control_plane.skew_held);
    assert_eq!(control_plane.kubelet_restarts_checked, CONTROL_PLANES + WORKERS, "one kubelet restart per node");
    assert_eq!(control_plane.oldest_api_server, Some("v1.31.0".parse().expect("valid")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_image_is_rolled_back_and_an_unpullable_one_changes_nothing() {
    let mut crash = config(13_000);
    crash.fault_rate = 1.0;
    crash.fault_kinds = vec![FaultKind::ImageCrashLoops];
    let report = run(&crash).await.expect("the run completes");
    assert!(report.checks.passed, "{:#?}", report.checks.violations);
    assert_eq!(report.outcomes, stopped_at_the_first_control_plane_node("error Swap static_pod_not_running"));
    assert_eq!(report.control_plane.static_pods_rolled_back, 1, "{:?}", report.control_plane);
    assert_eq!(report.control_plane.static_pods_as_started, CONTROL_PLANES);
    assert_eq!(report.control_plane.kubelet_restarts_checked, 0, "no kubelet restarted");
    assert_eq!(report.control_plane.oldest_api_server, Some("v1.30.2".parse().expect("valid")));

    let mut unpullable = config(14_000);
    unpullable.fault_rate = 1.0;
    unpullable.fault_kinds = vec![FaultKind::ImageUnpullable];
    let report = run(&unpullable).await.expect("the run completes");
    assert!(report.checks.passed, "{:#?}", report.checks.violations);
    assert_eq!(report.outcomes, stopped_at_the_first_control_plane_node("error Stage image_pull_failed"));
    assert_eq!(report.control_plane.static_pods_rolled_back, 0, "nothing was swapped: {:?}", report.control_plane);
    assert_eq!(report.control_plane.static_pods_as_started, CONTROL_PLANES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_driven_before_the_static_pods_are_caught() {
    let mut kubelets_first = config(15_000);
    kubelets_first.to = "v1.30.3".parse().expect("valid");
    kubelets_first.withhold_images = true;
    let report = run(&kubelets_first).await.expect("the run completes");
    assert!(!report.checks.passed);
    assert!(!report.control_plane.skew_held);
    let found = checks(&report);
    assert!(found.contains(&"kubelet_not_newer_than_api_server"), "{found:?}");
    assert!(found.contains(&"static_pods_where_expected"), "patched control-plane nodes on old images: {found:?}");
}

/// The seed whose plan (fault rate 0.6, every kind) gives cp-0 an agent
/// crash (it recovers) and cp-1 an image that cannot be pulled.
const SEED_CP_1_UNPULLABLE: u64 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_upgraded_on_a_node_whose_kubelet_never_came_are_not_counted_as_its_upgrade() {
    use upkeep_simulator::faults::FaultPlan;
    let mut later_failure = config(16_000);
    later_failure.seed = SEED_CP_1_UNPULLABLE;
    later_failure.fault_rate = 0.6;
    let plan = FaultPlan::derive(
        later_failure.seed,
        later_failure.nodes,
        CONTROL_PLANES,
        later_failure.fault_rate,
        &later_failure.fault_kinds,
        later_failure.latency,
    );
    let control_plane: Vec<String> =
        plan.nodes[..CONTROL_PLANES].iter().map(|n| n.fault.map(|f| f.to_string()).unwrap_or_default()).collect();
    assert_eq!(
        control_plane,
        ["agent-crash", "image-unpullable", "image-crash-loops"],
        "seed {SEED_CP_1_UNPULLABLE} no longer gives this plan"
    );
    let report = run(&later_failure).await.expect("the run completes");
    assert!(report.checks.passed, "{:#?}", report.checks.violations);
    let mut expected = stopped_at_the_first_control_plane_node("pending");
    expected.insert("cp-1".to_owned(), "error Stage image_pull_failed".to_owned());
    assert_eq!(report.outcomes, expected, "cp-0's static pods went through, its kubelet never started");
    assert_eq!(report.counters.pending, CONTROL_PLANES + WORKERS - 1);
    assert_eq!(report.control_plane.static_pods_upgraded, 1, "{:?}", report.control_plane);
    assert_eq!(report.control_plane.static_pods_as_started, 2);
}
