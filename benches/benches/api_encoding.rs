//! JSON encoding of the answer an agent writes most: a finished upgrade
//! operation, also what the agent saves at every step (its record holds it).
//!
//! Run: `cargo bench -p upkeep-benches --bench api_encoding`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use upkeep_common::api::{Operation, StepName};

/// A finished upgrade as an agent reports it, every step with nanosecond times.
fn finished_upgrade() -> Operation {
    let steps: Vec<serde_json::Value> = StepName::UPGRADE
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({
                "name": name,
                "status": "Success",
                "started_at": format!("2026-12-01T18:40:0{i}.123456789Z"),
                "finished_at": format!("2026-12-01T18:40:0{i}.987654321Z"),
                "message": "",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": "op-0123456789abcdef",
        "request_token": "rollout-1-worker-17",
        "kind": "upgrade",
        "from_version": "v1.30.2",
        "target_version": "v1.30.3",
        "phase": "Succeeded",
        "steps": steps,
        "errors": [],
        "created_at": "2026-12-01T18:40:00.000123456Z",
        "started_at": "2026-12-01T18:40:00.001Z",
        "finished_at": "2026-12-01T18:40:08Z",
        "requested_by": "coordinator (operator)",
        "accepted_risks": [],
        "dry_run": false,
        "no_op": false,
    }))
    .expect("a valid operation")
}

fn api_encoding(c: &mut Criterion) {
    let operation = finished_upgrade();
    c.bench_function("encode a finished upgrade operation", |b| {
        b.iter(|| serde_json::to_vec(black_box(&operation)).expect("encodes"))
    });
}

criterion_group!(benches, api_encoding);
criterion_main!(benches);
