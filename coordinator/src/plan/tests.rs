//! The planner's tests: cases, and rollouts simulated over random fleets.

use super::*;
use proptest::prelude::*;

/// The planner as first written: a pass over every node per count, kept as
/// the model the one-pass planner must agree with.
fn reference_plan(nodes: &[PlanNode], limits: &Limits, stopped: bool, now_ms: u64) -> Plan {
    let end_soak = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.status, NodeStatus::Soaking { until_ms } if until_ms <= now_ms))
        .map(|(i, _)| i)
        .collect();
    let mut result = Plan { end_soak, ..Plan::default() };
    let failures = nodes.iter().filter(|n| n.status == NodeStatus::Failed).count();
    let active = nodes.iter().filter(|n| n.status.is_active()).count();
    let pending = nodes.iter().filter(|n| n.status == NodeStatus::Pending).count();
    let control_plane_failed = nodes.iter().any(|n| n.role == NodeRole::ControlPlane && n.status == NodeStatus::Failed);
    result.halt = if control_plane_failed {
        Some(Halt::ControlPlaneFailed)
    } else if failures > limits.max_failures {
        Some(Halt::FailureBudget { failures })
    } else if stopped {
        Some(Halt::Stopped)
    } else {
        None
    };
    if result.halt.is_none() && pending > 0 {
        result.start = reference_choose(nodes, limits);
        if result.start.is_empty() && active == 0 {
            let unavailable = nodes.iter().filter(|n| n.unavailable).count();
            result.halt = Some(Halt::Blocked { unavailable });
        }
    }
    result.complete = active == 0 && result.start.is_empty() && (pending == 0 || result.halt.is_some());
    result
}

fn reference_choose(nodes: &[PlanNode], limits: &Limits) -> Vec<usize> {
    let is_cp = |n: &PlanNode| n.role == NodeRole::ControlPlane;
    let mut unavailable = nodes.iter().filter(|n| n.status.is_active() || n.unavailable).count();
    let control_plane_busy = nodes.iter().any(|n| is_cp(n) && n.status.is_active());
    let control_plane_pending = nodes.iter().position(|n| is_cp(n) && n.status == NodeStatus::Pending);
    if control_plane_busy {
        return Vec::new();
    }
    if let Some(index) = control_plane_pending {
        let cost = usize::from(!nodes[index].unavailable);
        return if unavailable + cost <= limits.max_unavailable { vec![index] } else { Vec::new() };
    }
    let mut per_zone: HashMap<Option<&str>, usize> = HashMap::new();
    for node in nodes.iter().filter(|n| n.status.is_active()) {
        *per_zone.entry(node.zone.as_deref()).or_default() += 1;
    }
    let mut start = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        if node.status != NodeStatus::Pending {
            continue;
        }
        let cost = usize::from(!node.unavailable);
        if unavailable + cost > limits.max_unavailable {
            continue;
        }
        let in_zone = per_zone.entry(node.zone.as_deref()).or_default();
        if limits.per_zone.is_some_and(|limit| *in_zone >= limit) {
            continue;
        }
        *in_zone += 1;
        unavailable += cost;
        start.push(index);
    }
    start
}

fn node(role: NodeRole, zone: &str) -> PlanNode {
    PlanNode { role, zone: Some(zone.to_owned()), status: NodeStatus::Pending, unavailable: false }
}

fn limits(max_unavailable: usize, max_failures: usize) -> Limits {
    Limits { max_unavailable, max_failures, per_zone: None, soak_ms: 0 }
}

#[test]
fn control_plane_goes_first_one_at_a_time() {
    let nodes = vec![node(NodeRole::Worker, "a"), node(NodeRole::ControlPlane, "a"), node(NodeRole::ControlPlane, "b")];
    assert_eq!(plan(&nodes, &limits(5, 0), false, 0).start, [1]);
    let mut busy = nodes.clone();
    busy[1].status = NodeStatus::InFlight;
    assert!(plan(&busy, &limits(5, 0), false, 0).start.is_empty());
    busy[1].status = NodeStatus::Failed;
    let halted = plan(&busy, &limits(5, 5), false, 0);
    assert_eq!(halted.halt, Some(Halt::ControlPlaneFailed));
    assert!(halted.complete);
}

#[test]
fn already_unavailable_nodes_count_against_the_limit() {
    let mut nodes: Vec<_> = (0..5).map(|_| node(NodeRole::Worker, "a")).collect();
    nodes[4].unavailable = true;
    nodes[4].status = NodeStatus::Patched;
    assert_eq!(plan(&nodes, &limits(2, 0), false, 0).start, [0]);
    nodes[3].unavailable = true;
    let blocked = plan(&nodes, &limits(2, 0), false, 0);
    assert_eq!(blocked.start, [3], "an unavailable pending node costs nothing more");
    nodes[3].status = NodeStatus::Patched;
    let blocked = plan(&nodes, &limits(2, 0), false, 0);
    assert_eq!(blocked.halt, Some(Halt::Blocked { unavailable: 2 }));
    assert!(blocked.complete);
}

#[test]
fn per_zone_and_soak() {
    let nodes = vec![node(NodeRole::Worker, "a"), node(NodeRole::Worker, "a"), node(NodeRole::Worker, "b")];
    let zoned = Limits { per_zone: Some(1), ..limits(3, 0) };
    assert_eq!(plan(&nodes, &zoned, false, 0).start, [0, 2]);
    let mut soaking = nodes.clone();
    soaking[0].status = NodeStatus::Soaking { until_ms: 100 };
    soaking[2].status = NodeStatus::Soaking { until_ms: 200 };
    let waiting = plan(&soaking, &limits(2, 0), false, 50);
    assert!(waiting.start.is_empty() && waiting.end_soak.is_empty());
    assert_eq!(plan(&soaking, &limits(2, 0), false, 150).end_soak, [0]);
}

#[test]
fn dry_run_lists_waves() {
    let roles = vec![
        (NodeRole::ControlPlane, None),
        (NodeRole::ControlPlane, None),
        (NodeRole::Worker, None),
        (NodeRole::Worker, None),
        (NodeRole::Worker, None),
    ];
    assert_eq!(dry_run_waves(&roles, &limits(2, 0)), vec![vec![0], vec![1], vec![2, 3], vec![4]]);
}

/// A node's fate in a simulated rollout.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Patch,
    Skip,
    Fail,
}

fn any_fleet() -> impl Strategy<Value = Vec<(bool, u8, bool, u8)>> {
    proptest::collection::vec((proptest::bool::weighted(0.15), 0u8..3, proptest::bool::weighted(0.1), 0u8..10), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn simulated_rollouts_keep_every_promise(
        fleet in any_fleet(),
        max_unavailable in 1usize..6,
        max_failures in 0usize..4,
        per_zone in proptest::option::of(1usize..3),
        soak_ms in 0u64..3,
        picks in proptest::collection::vec(any::<u16>(), 200),
    ) {
        let limits = Limits { max_unavailable, max_failures, per_zone, soak_ms };
        let fates: Vec<Fate> = fleet.iter().map(|&(_, _, _, f)| match f { 0 => Fate::Fail, 1 | 2 => Fate::Skip, _ => Fate::Patch }).collect();
        let mut nodes: Vec<PlanNode> = fleet.iter().map(|&(cp, zone, unavailable, _)| PlanNode {
            role: if cp { NodeRole::ControlPlane } else { NodeRole::Worker },
            zone: Some(format!("z{zone}")),
            status: NodeStatus::Pending,
            unavailable,
        }).collect();
        let mut started = vec![0u32; nodes.len()];
        let mut now = 0u64;
        let mut pick = picks.iter().cycle();
        for _ in 0..10_000 {
            let before_unavailable = nodes.iter().filter(|n| n.status.is_active() || n.unavailable).count();
            let failures = nodes.iter().filter(|n| n.status == NodeStatus::Failed).count();
            let decision = plan(&nodes, &limits, false, now);
            if !decision.start.is_empty() {
                prop_assert!(failures <= max_failures, "started after the failure budget passed");
            }
            for &index in &decision.start {
                prop_assert_eq!(nodes[index].status, NodeStatus::Pending, "a node was planned twice");
                nodes[index].status = NodeStatus::InFlight;
                started[index] += 1;
            }
            let unavailable = nodes.iter().filter(|n| n.status.is_active() || n.unavailable).count();
            if !decision.start.is_empty() {
                prop_assert!(unavailable <= max_unavailable.max(before_unavailable),
                    "{} unavailable with a limit of {}", unavailable, max_unavailable);
            }
            let cp_active = nodes.iter().filter(|n| n.role == NodeRole::ControlPlane && n.status.is_active()).count();
            prop_assert!(cp_active <= 1, "two control-plane nodes at once");
            let cp_waiting = nodes
                .iter()
                .any(|n| n.role == NodeRole::ControlPlane && (n.status == NodeStatus::Pending || n.status.is_active()));
            let worker_active = nodes.iter().any(|n| n.role == NodeRole::Worker && n.status.is_active());
            prop_assert!(!(cp_waiting && worker_active), "a worker ran before the control plane was done");
            for &index in &decision.end_soak {
                nodes[index].status = NodeStatus::Patched;
            }
            if decision.complete {
                break;
            }
            let in_flight: Vec<usize> = nodes.iter().enumerate().filter(|(_, n)| n.status == NodeStatus::InFlight).map(|(i, _)| i).collect();
            if in_flight.is_empty() {
                now += 1;
                continue;
            }
            let index = in_flight[usize::from(*pick.next().unwrap_or(&0)) % in_flight.len()];
            nodes[index].status = match fates[index] {
                Fate::Patch => NodeStatus::Soaking { until_ms: now + soak_ms },
                Fate::Skip => NodeStatus::Skipped,
                Fate::Fail => NodeStatus::Failed,
            };
            now += 1;
        }
        let final_plan = plan(&nodes, &limits, false, now);
        prop_assert!(final_plan.complete, "the rollout never completed");
        for (index, node) in nodes.iter().enumerate() {
            prop_assert!(started[index] <= 1, "node {} started {} times", index, started[index]);
            let counters = [
                node.status == NodeStatus::Patched,
                node.status == NodeStatus::Skipped,
                node.status == NodeStatus::Pending,
                node.status == NodeStatus::Failed,
            ];
            prop_assert_eq!(counters.iter().filter(|c| **c).count(), 1, "node {} is in {:?}", index, node.status);
        }
    }

    #[test]
    fn any_state_is_planned_as_the_reference_plans_it(
        fleet in proptest::collection::vec((0u8..100, 0u8..3, proptest::bool::weighted(0.2), 0u8..6, 0u64..4), 0..40),
        control_plane_percent in prop_oneof![Just(0u8), Just(3), Just(30)],
        max_unavailable in 0usize..6,
        max_failures in 0usize..4,
        per_zone in proptest::option::of(0usize..3),
        stopped in proptest::bool::weighted(0.1),
        now_ms in 0u64..4,
    ) {
        let limits = Limits { max_unavailable, max_failures, per_zone, soak_ms: 0 };
        let nodes: Vec<PlanNode> = fleet.iter().map(|&(role, zone, unavailable, status, until_ms)| PlanNode {
            role: if role < control_plane_percent { NodeRole::ControlPlane } else { NodeRole::Worker },
            zone: (zone > 0).then(|| format!("z{zone}")),
            status: match status {
                0 | 1 => NodeStatus::Pending,
                2 => NodeStatus::InFlight,
                3 => NodeStatus::Soaking { until_ms },
                4 => NodeStatus::Patched,
                _ => if until_ms == 0 { NodeStatus::Failed } else { NodeStatus::Skipped },
            },
            unavailable,
        }).collect();
        prop_assert_eq!(plan(&nodes, &limits, stopped, now_ms), reference_plan(&nodes, &limits, stopped, now_ms));
    }
}
