//! The coordinator service's OpenAPI document (`coordinator/openapi.json`) on
//! its own: it parses, every `$ref` resolves, its routes and roles are the
//! service API's (DESIGN.md §6), and the service's records as serde writes
//! them validate against its schemas (and a misspelled field does not).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use upkeep_common::api::{Condition, ConditionStatus, ConditionType, NodePhase, NodeRole};
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Version};
use upkeep_coordinator::catalog::Risk;
use upkeep_coordinator::plan::{Halt, Limits};
use upkeep_coordinator::report::Counters;
use upkeep_coordinator::service::model::{
    ClusterSpec, EventKind, HistoryEntry, HistoryState, RoleCounters, TaskStatus, TaskType, Update, UpdateError,
    UpdateEvent, UpdateParam, UpdateStatus, UpdateType, Waiting,
};
use upkeep_coordinator::service::nodes::NodeView;
use upkeep_coordinator::service::view::{AvailableUpdate, ClusterStatus, ClusterView, ConditionalUpdate};

/// A value as serde writes it.
macro_rules! to_value {
    ($value:expr) => {
        serde_json::to_value($value).expect("serializes")
    };
}

fn document() -> Value {
    upkeep_tests::openapi_check::document("coordinator/openapi.json")
}

/// The service API's routes and the lowest role each needs, as DESIGN.md §6 lists them.
const ROUTES: [(&str, &str, &str); 15] = [
    ("get", "/healthz", "any"),
    ("get", "/readyz", "any"),
    ("get", "/metrics", "reader"),
    ("get", "/v1/clusters", "reader"),
    ("get", "/v1/clusters/{cluster}", "reader"),
    ("patch", "/v1/clusters/{cluster}", "operator"),
    ("post", "/v1/clusters/{cluster}/upgrade", "operator"),
    ("get", "/v1/clusters/{cluster}/updates", "reader"),
    ("get", "/v1/clusters/{cluster}/updates/{id}", "reader"),
    ("post", "/v1/clusters/{cluster}/updates/{id}/pause", "operator"),
    ("post", "/v1/clusters/{cluster}/updates/{id}/resume", "operator"),
    ("post", "/v1/clusters/{cluster}/updates/{id}/cancel", "operator"),
    ("post", "/v1/clusters/{cluster}/updates/{id}/rollback", "admin"),
    ("get", "/v1/clusters/{cluster}/updates/{id}/events", "reader"),
    ("get", "/v1/clusters/{cluster}/nodes", "reader"),
];

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                found.push((method.clone(), path.clone(), operation));
            }
        }
    }
    found
}

#[test]
fn the_document_is_openapi_3_1_with_exactly_the_service_routes_and_their_roles() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeMap<(String, String), Value> = operations(&doc)
        .into_iter()
        .map(|(method, path, operation)| ((method, path), operation["x-upkeep-role"].clone()))
        .collect();
    let expected: BTreeMap<(String, String), Value> = ROUTES
        .iter()
        .map(|(method, path, role)| (((*method).to_owned(), (*path).to_owned()), Value::from(*role)))
        .collect();
    assert_eq!(documented, expected);
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push((at.clone(), target)),
                    _ => refs(inner, format!("{at}/{key}"), found),
                }
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                refs(inner, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_schema_is_used() {
    let doc = document();
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 50, "the document refers to its schemas");
    for (at, target) in &found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(doc.pointer(pointer).is_some_and(Value::is_object), "{at}: {target} resolves to nothing");
    }
    let used: BTreeSet<&str> =
        found.iter().filter_map(|(_, target)| target.strip_prefix("#/components/schemas/")).collect();
    let defined: BTreeSet<&str> =
        doc["components"]["schemas"].as_object().expect("schemas").keys().map(String::as_str).collect();
    assert_eq!(defined.difference(&used).collect::<Vec<_>>(), Vec::<&&str>::new(), "schemas nothing refers to");
}

#[test]
fn every_route_lists_its_errors() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let statuses: BTreeSet<&str> =
            operation["responses"].as_object().expect("responses").keys().map(String::as_str).collect();
        let mut needed = vec!["400", "401", "403", "405", "414", "431"];
        if path.contains("{cluster}") {
            needed.extend(["404", "503"]);
        }
        if method != "get" {
            needed.extend(["408", "409", "413", "415", "422"]);
        }
        if path == "/v1/clusters/{cluster}/upgrade" || method == "patch" {
            needed.push("412");
        }
        for status in needed {
            assert!(statuses.contains(status), "{method} {path} does not list {status}: {statuses:?}");
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            assert!(
                status.starts_with('2') || response["content"]["application/json"]["schema"].is_object(),
                "{method} {path} {status} has no error schema"
            );
        }
        let parameters: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|list| list.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let in_path: BTreeSet<&str> =
            path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}')).collect();
        assert_eq!(parameters, in_path, "{method} {path}: path parameters");
    }
}

/// The errors of validating `value` against the component schema `name`.
fn violations(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let mut rooted = json!({"$ref": format!("#/components/schemas/{name}")});
    rooted["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&rooted)
        .unwrap_or_else(|error| panic!("schema {name} does not compile: {error}"));
    validator.iter_errors(value).map(|error| format!("{error} at {}", error.instance_path())).collect()
}

fn assert_valid(doc: &Value, name: &str, value: &Value) {
    let errors = violations(doc, name, value);
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{value:#}");
}

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, second).single().expect("valid time")
}

fn v(text: &str) -> Version {
    text.parse().expect("valid version")
}

fn role_counters() -> RoleCounters {
    RoleCounters {
        control_plane: Counters { patched: 3, skipped: 0, pending: 0, error: 0 },
        workers: Counters { patched: 4, skipped: 1, pending: 2, error: 1 },
    }
}

fn cluster_view(full: bool) -> ClusterView {
    ClusterView {
        name: "prod-eu".into(),
        spec: ClusterSpec { version: full.then(|| v("v1.31.2")), channel: "stable".into(), generation: 3 },
        k8s_version: full.then(|| v("v1.31.2")),
        observed_kubernetes_version: (!full).then(|| v("v1.30.5")),
        observed_generation: 2,
        status: if full { ClusterStatus::Upgrading } else { ClusterStatus::Running },
        status_message: "update u-1 to v1.31.2 is InProgress".into(),
        workers_patched: 4,
        workers_skipped: 1,
        workers_pending: full,
        workers_error: full.then(|| "1 workers failed: health_check_failed".into()),
        counters: role_counters(),
        nodes_by_version: BTreeMap::from([("v1.30.5".to_owned(), 3), ("unknown".to_owned(), 1)]),
        conditions: vec![Condition {
            kind: ConditionType::Degraded,
            status: ConditionStatus::False,
            reason: "Healthy".into(),
            message: "no failure".into(),
            last_transition_time: at(0),
        }],
        history: full.then(|| {
            vec![HistoryEntry {
                version: v("v1.30.5"),
                state: HistoryState::Completed,
                update: "u-0".into(),
                started_at: at(0),
                completed_at: at(9),
                verified: true,
                accepted_risks: vec![],
            }]
        }),
        available_updates: vec![AvailableUpdate { version: v("v1.31.3"), channels: vec!["stable".into()] }],
        conditional_updates: vec![ConditionalUpdate {
            release: AvailableUpdate { version: v("v1.32.0"), channels: vec!["fast".into()] },
            risks: vec![Risk { name: "CgroupV1Removed".into(), message: "cgroup v1 nodes stop".into() }],
        }],
        current_update: full.then(|| "u-1".into()),
        leader: "replica-a".into(),
    }
}

fn update(ended: bool) -> Update {
    let mut tasks = Update::fresh_tasks();
    tasks[0].status = TaskStatus::Success;
    tasks[0].started_at = Some(at(1));
    tasks[0].ended_at = Some(at(2));
    tasks[1].status = TaskStatus::Running;
    Update {
        id: "u-1".into(),
        cluster: "prod-eu".into(),
        kind: UpdateType::VersionUpdate,
        params: vec![UpdateParam { kind: "Version".into(), value: "v1.31.2".into() }],
        target_version: v("v1.31.2"),
        status: if ended { UpdateStatus::Failed } else { UpdateStatus::Paused },
        created_at: at(0),
        ended_at: ended.then(|| at(9)),
        requested_by: "ops".into(),
        request_token: ended.then(|| "t-1".into()),
        force: ended,
        accepted_risks: vec!["CgroupV1Removed".into()],
        limits: Limits { max_unavailable: 2, max_failures: 1, per_zone: ended.then_some(1), soak_ms: 30_000 },
        prestage: true,
        node_timeout_secs: 600,
        errors: vec![UpdateError {
            error_code: "health_check_failed".into(),
            error_message: "kubelet did not become Ready".into(),
            task: TaskType::Upgrade,
            resource_ids: vec!["worker-3".into()],
        }],
        tasks,
        waiting: (!ended).then(|| Waiting { reason: "paused".into(), message: "resume to go on".into() }),
        counters: role_counters(),
    }
}

fn events() -> Vec<UpdateEvent> {
    let kinds = vec![
        EventKind::Task { task: TaskType::PreCheck, status: TaskStatus::Running, message: "asking 8 nodes".into() },
        EventKind::NodeStarted { node: "worker-1".into() },
        EventKind::NodeFinished {
            node: "worker-1".into(),
            outcome: "patched".into(),
            error_code: None,
            counters: role_counters(),
        },
        EventKind::NodeFinished {
            node: "worker-3".into(),
            outcome: "error".into(),
            error_code: Some("health_check_failed".into()),
            counters: role_counters(),
        },
        EventKind::Halted { reason: Halt::ControlPlaneFailed },
        EventKind::Halted { reason: Halt::FailureBudget { failures: 2 } },
        EventKind::Halted { reason: Halt::Stopped },
        EventKind::Halted { reason: Halt::Blocked { unavailable: 3 } },
        EventKind::Halted { reason: Halt::StopWaitEnded { running: 1 } },
        EventKind::Status { status: UpdateStatus::Cancelled },
    ];
    kinds.into_iter().zip(1..).map(|(kind, seq)| UpdateEvent { seq, at: at(3), kind }).collect()
}

fn node_views() -> [NodeView; 2] {
    let unread = NodeView {
        name: "worker-1".into(),
        role: NodeRole::Worker,
        pool: None,
        zone: None,
        arch: None,
        versions: BTreeMap::new(),
        phase: None,
        cordoned: None,
        last_operation: None,
        last_error: None,
        read_at: None,
    };
    let read = NodeView {
        name: "cp-1".into(),
        role: NodeRole::ControlPlane,
        pool: Some("system".into()),
        zone: Some("eu-1a".into()),
        arch: Some("arm64".into()),
        versions: BTreeMap::from([("kubelet".to_owned(), Some(v("v1.31.2"))), ("etcd".to_owned(), None)]),
        phase: Some(NodePhase::Degraded),
        cordoned: Some(true),
        last_operation: Some("op-7".into()),
        last_error: Some("unreachable: connection refused".into()),
        read_at: Some(at(5)),
    };
    [unread, read]
}

#[test]
fn the_service_records_as_serialized_validate_against_the_schemas() {
    let doc = document();
    for full in [true, false] {
        assert_valid(&doc, "ClusterView", &to_value!(&cluster_view(full)));
    }
    let mut listed = cluster_view(true);
    listed.history = None;
    assert_valid(&doc, "ClusterList", &json!({"clusters": [to_value!(&listed), to_value!(&cluster_view(false))]}));
    for ended in [true, false] {
        assert_valid(&doc, "Update", &to_value!(&update(ended)));
    }
    assert_valid(&doc, "UpgradeAccepted", &json!({"cluster": "prod-eu", "update": to_value!(&update(false))}));
    assert_valid(&doc, "UpdateList", &json!({"updates": [to_value!(&update(true)), to_value!(&update(false))]}));
    for event in events() {
        assert_valid(&doc, "UpdateEvent", &to_value!(&event));
    }
    assert_valid(
        &doc,
        "NodeList",
        &json!({"nodes": node_views().iter().map(|node| to_value!(node)).collect::<Vec<_>>()}),
    );
    let refused = ErrorBody::with_details(
        ErrorCode::ValidationFailed,
        "the catalog has no release 1.35",
        vec![ErrorDetail::new("target_version", "not_in_catalog", "1.35 is not in the catalog")],
    );
    assert_valid(&doc, "Error", &to_value!(&refused));
    assert_valid(
        &doc,
        "Error",
        &json!({"error": {"code": "update_in_progress", "message": "u-1 runs", "details": []}}),
    );
    assert_valid(&doc, "Health", &json!({"status": "ok"}));
    assert_valid(&doc, "Readiness", &json!({"ready": true, "leader": false, "replica": "replica-a"}));
}

#[test]
fn a_misspelled_missing_or_mistyped_field_breaks_the_schemas() {
    let doc = document();
    let mut view = to_value!(&cluster_view(true));
    view["workers_pending"] = json!(3);
    assert!(!violations(&doc, "ClusterView", &view).is_empty(), "workers_pending is a boolean");
    let mut view = to_value!(&cluster_view(true));
    view["status"] = json!("Upgrading");
    assert!(!violations(&doc, "ClusterView", &view).is_empty(), "status is lower case");
    let mut update = to_value!(&update(true));
    update["tasks"][0]["type"] = json!("Precheck");
    assert!(!violations(&doc, "Update", &update).is_empty(), "task types are spelled as serde spells them");
    let mut update = to_value!(&self::update(true));
    update.as_object_mut().expect("object").remove("waiting");
    assert!(!violations(&doc, "Update", &update).is_empty(), "waiting is always present, null when not waiting");
    let mut event = to_value!(&events()[2]);
    event["outcome_code"] = json!("x");
    assert!(!violations(&doc, "UpdateEvent", &event).is_empty(), "an unknown field");
    let mut node = to_value!(&node_views()[1]);
    node["role"] = json!("control_plane");
    assert!(!violations(&doc, "NodeView", &node).is_empty(), "roles are kebab-case");
}

#[test]
fn requests_documented_are_the_ones_the_client_sends() {
    use upkeep_coordinator::service_client::{PolicyOverrides, UpgradeRequest};
    let doc = document();
    let request = UpgradeRequest {
        target_version: "1.31".into(),
        request_token: Some("t-1".into()),
        force: true,
        dry_run: true,
        policy: Some(PolicyOverrides {
            max_unavailable: Some("10%".into()),
            max_failures: Some("1".into()),
            soak: Some("30s".into()),
        }),
    };
    assert_valid(&doc, "UpgradeRequest", &to_value!(&request));
    assert_valid(&doc, "UpgradeRequest", &to_value!(&UpgradeRequest::to("v1.31.2")));
    assert!(!violations(&doc, "UpgradeRequest", &json!({"target_version": "latest"})).is_empty());
    assert!(
        !violations(&doc, "UpgradeRequest", &json!({"target_version": "1.31", "policy": {"gates": []}})).is_empty()
    );
    assert_valid(&doc, "VersionPatch", &json!({"version": "1.31"}));
}
