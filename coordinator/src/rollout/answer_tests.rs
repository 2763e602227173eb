//! Tests of the answer checks: every mismatch is named, and a node counts as
//! patched only at the target.

use chrono::Utc;
use upkeep_common::api::{
    Artifact, ComponentState, Condition, ConditionStatus, ConditionType, HostFacts, LoadAverage, NodePhase, NodeRole,
    NodeState, Operation, OperationKind, OperationPhase, UpgradeRequest,
};

use super::*;

fn request() -> UpgradeRequest {
    UpgradeRequest {
        target_version: "v1.30.3".parse().expect("valid"),
        artifacts: vec![Artifact {
            component: "kubelet".parse().expect("valid"),
            source: "file:///tmp/kubelet".into(),
            sha256: "0".repeat(64).parse().expect("valid"),
            signature: None,
        }],
        request_token: Some("r1:worker-1".parse().expect("valid")),
        force: false,
        drain: None,
        dry_run: false,
        stage_only: false,
        images: Vec::new(),
        control_plane_version: None,
    }
}

fn operation(id: &str, phase: OperationPhase) -> Operation {
    Operation {
        id: id.parse().expect("valid"),
        request_token: Some("r1:worker-1".parse().expect("valid")),
        kind: OperationKind::Upgrade,
        from_version: Some("v1.30.2".parse().expect("valid")),
        target_version: Some("v1.30.3".parse().expect("valid")),
        phase,
        steps: vec![],
        errors: vec![],
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        requested_by: "ops".into(),
        accepted_risks: vec![],
        dry_run: false,
        no_op: false,
    }
}

fn node(name: &str, kubelet: &str) -> NodeState {
    NodeState {
        name: name.parse().expect("valid"),
        role: NodeRole::Worker,
        phase: NodePhase::Idle,
        cordoned: false,
        components: vec![ComponentState {
            name: "kubelet".parse().expect("valid"),
            observed_version: Some(kubelet.parse().expect("valid")),
            desired_version: None,
            observed_at: None,
            probe_error: None,
        }],
        conditions: vec![],
        current_operation: None,
        history: vec![],
        host: HostFacts {
            arch: "amd64".into(),
            os: "Linux".into(),
            kernel: "6".into(),
            cpus: 2,
            memory_total_bytes: 1,
            memory_available_bytes: 1,
            disk_path: "/".into(),
            disk_free_bytes: None,
            uptime_seconds: 1,
            load: LoadAverage { one: 0.0, five: 0.0, fifteen: 0.0 },
        },
    }
}

fn code(result: Result<(), Problem>) -> String {
    result.expect_err("a problem").code
}

#[test]
fn an_answer_about_another_operation_kind_or_target_is_a_mismatch() {
    let asked = request();
    let first = operation("op-1", OperationPhase::Pending);
    assert_eq!(check_operation(&asked, None, &first), Ok(()));
    let running = operation("op-1", OperationPhase::Running);
    assert_eq!(check_operation(&asked, Some((&first.id, first.phase)), &running), Ok(()));
    let other = operation("op-2", OperationPhase::Running);
    assert_eq!(code(check_operation(&asked, Some((&first.id, first.phase)), &other)), "operation_mismatch");
    let drain = Operation { kind: OperationKind::Drain, ..first.clone() };
    assert_eq!(code(check_operation(&asked, None, &drain)), "operation_mismatch");
    let elsewhere = Operation { target_version: Some("v1.31.0".parse().expect("valid")), ..first.clone() };
    let problem = check_operation(&asked, None, &elsewhere).expect_err("another target");
    assert!(problem.message.contains("v1.31.0") && problem.message.contains("v1.30.3"), "{}", problem.message);
    let token = Operation { request_token: Some("r9:worker-1".parse().expect("valid")), ..first };
    assert_eq!(code(check_operation(&asked, None, &token)), "operation_mismatch");
}

#[test]
fn a_phase_never_goes_back() {
    let asked = request();
    let id: upkeep_common::ids::OperationId = "op-1".parse().expect("valid");
    let cases = [
        (OperationPhase::Running, OperationPhase::Pending, false),
        (OperationPhase::Succeeded, OperationPhase::Running, false),
        (OperationPhase::Failed, OperationPhase::Succeeded, false),
        (OperationPhase::Pending, OperationPhase::Running, true),
        (OperationPhase::Running, OperationPhase::Running, true),
        (OperationPhase::Running, OperationPhase::RolledBack, true),
        (OperationPhase::Succeeded, OperationPhase::Succeeded, true),
    ];
    for (before, after, allowed) in cases {
        let result = check_operation(&asked, Some((&id, before)), &operation("op-1", after));
        match allowed {
            true => assert_eq!(result, Ok(()), "{before:?} -> {after:?}"),
            false => assert_eq!(code(result), "operation_phase_regressed", "{before:?} -> {after:?}"),
        }
    }
}

#[test]
fn a_node_is_patched_only_when_it_reports_the_target_under_its_own_name() {
    let asked = request();
    let name: upkeep_common::ids::NodeName = "worker-1".parse().expect("valid");
    let id: upkeep_common::ids::OperationId = "op-1".parse().expect("valid");
    assert_eq!(check_finished_node(&name, "127.0.0.2:1", &id, &asked, &node("worker-1", "v1.30.3")), Ok(()));
    let behind = check_finished_node(&name, "127.0.0.2:1", &id, &asked, &node("worker-1", "v1.30.2"))
        .expect_err("not at the target");
    assert_eq!(behind.code, "version_not_reached");
    assert!(behind.message.contains("kubelet reports v1.30.2"), "{}", behind.message);
    let impostor =
        check_finished_node(&name, "127.0.0.2:1", &id, &asked, &node("worker-9", "v1.30.3")).expect_err("another node");
    assert_eq!(impostor.code, "node_name_mismatch");
    assert!(impostor.message.contains("worker-1") && impostor.message.contains("worker-9"), "{}", impostor.message);
    let still_running =
        NodeState { phase: NodePhase::Upgrading, current_operation: Some(id.clone()), ..node("worker-1", "v1.30.3") };
    assert_eq!(
        code(check_finished_node(&name, "127.0.0.2:1", &id, &asked, &still_running)),
        "operation_phase_regressed"
    );
}

#[test]
fn endings_keep_the_agents_step_and_code() {
    let mut failed = operation("op-1", OperationPhase::RolledBack);
    failed.errors = vec![upkeep_common::ErrorObject {
        code: upkeep_common::ErrorCode::Conflict,
        message: "health check failed".into(),
        details: vec![upkeep_common::ErrorDetail::new("HealthCheck", "health_check_failed", "no answer")],
    }];
    match ending(&failed) {
        Ending::Failed { problem, rolled_back } => {
            assert!(rolled_back);
            assert_eq!(problem.step.as_deref(), Some("HealthCheck"));
            assert_eq!(problem.code, "health_check_failed");
            assert_eq!(problem.message, "health check failed");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let no_op = Operation { no_op: true, ..operation("op-1", OperationPhase::Succeeded) };
    assert_eq!(ending(&no_op), Ending::AlreadyThere);
}

#[test]
fn cordoned_degraded_and_not_available_nodes_count_unavailable() {
    let ready = node("worker-1", "v1.30.2");
    assert!(!counts_unavailable(&ready));
    assert!(counts_unavailable(&NodeState { cordoned: true, ..ready.clone() }));
    assert!(counts_unavailable(&NodeState { phase: NodePhase::Degraded, ..ready.clone() }));
    let condition = |status| Condition {
        kind: ConditionType::Available,
        status,
        reason: "VersionProbe".into(),
        message: String::new(),
        last_transition_time: Utc::now(),
    };
    let not_available = NodeState { conditions: vec![condition(ConditionStatus::False)], ..ready.clone() };
    assert!(counts_unavailable(&not_available));
    let unknown = NodeState { conditions: vec![condition(ConditionStatus::Unknown)], ..ready };
    assert!(!counts_unavailable(&unknown), "not known yet is not counted");
}
