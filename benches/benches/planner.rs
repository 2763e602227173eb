//! The rollout planner's cost for 100,000 nodes: one decision at the start of a
//! rollout, one in the middle (a wave in flight, some failed) with and without
//! a per-zone limit, and the dry-run waves of a 10,000-node fleet.
//!
//! Run: `cargo bench -p upkeep-benches --bench planner`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use upkeep_common::api::NodeRole;
use upkeep_coordinator::plan::{Limits, NodeStatus, PlanNode, dry_run_waves, plan};

fn fleet(size: usize) -> Vec<PlanNode> {
    (0..size)
        .map(|i| PlanNode {
            role: if i < 5 { NodeRole::ControlPlane } else { NodeRole::Worker },
            zone: Some(format!("zone-{}", i % 3)),
            status: NodeStatus::Pending,
            unavailable: i % 997 == 0,
        })
        .collect()
}

fn planner(c: &mut Criterion) {
    let limits = Limits { max_unavailable: 1000, max_failures: 500, per_zone: Some(400), soak_ms: 0 };
    let start = fleet(100_000);
    c.bench_function("plan, 100k nodes, start", |b| b.iter(|| plan(black_box(&start), &limits, false, 0)));
    let mut middle = fleet(100_000);
    for (i, node) in middle.iter_mut().enumerate() {
        node.status = match i {
            _ if i < 50_000 => NodeStatus::Patched,
            _ if i < 50_900 => NodeStatus::InFlight,
            _ if i % 500 == 0 => NodeStatus::Failed,
            _ => NodeStatus::Pending,
        };
    }
    c.bench_function("plan, 100k nodes, mid-rollout", |b| b.iter(|| plan(black_box(&middle), &limits, false, 0)));
    let unzoned = Limits { per_zone: None, ..limits.clone() };
    c.bench_function("plan, 100k nodes, mid-rollout, no zone limit", |b| {
        b.iter(|| plan(black_box(&middle), &unzoned, false, 0))
    });
    let roles: Vec<_> =
        (0..10_000).map(|i| (if i < 3 { NodeRole::ControlPlane } else { NodeRole::Worker }, None)).collect();
    let wave_limits = Limits { max_unavailable: 100, max_failures: 0, per_zone: None, soak_ms: 0 };
    c.bench_function("dry-run waves, 10k nodes, 100 at a time", |b| {
        b.iter(|| dry_run_waves(black_box(&roles), &wave_limits))
    });
}

criterion_group!(benches, planner);
criterion_main!(benches);
