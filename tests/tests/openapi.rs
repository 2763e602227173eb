//! The OpenAPI document (`agent/openapi.json`) against the real server: its
//! paths and methods are exactly the router's, and real responses, errors
//! included, carry a status the document lists and validate against its schema.

use std::collections::BTreeSet;

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use upkeep_agent::server::routes::ROUTES;
use upkeep_common::Role;
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, Reply, client_config, request, send_raw};
use upkeep_tests::openapi_check::{self, assert_conforms, method_key, violations};
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{UpgradeNode, upgrade_body};

fn document() -> Value {
    openapi_check::document("agent/openapi.json")
}

#[test]
fn document_paths_are_exactly_the_routes() {
    let documented = openapi_check::documented_operations(&document());
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|route| (route.path.to_owned(), method_key(route.method).to_owned())).collect();
    assert_eq!(documented, served);
}

#[test]
fn document_roles_match_the_router() {
    let doc = document();
    for route in ROUTES {
        let operation = &doc["paths"][route.path][method_key(route.method)];
        let expected = match route.role {
            None => "any",
            Some(Role::Reader) => "reader",
            Some(Role::Operator) => "operator",
            Some(Role::Admin) => "admin",
        };
        assert_eq!(operation["x-upkeep-role"], expected, "{} {}", route.method, route.path);
    }
}

/// A real agent, and a client of `role` connected to it (keep the first two alive).
async fn agent_with_client(role: &str) -> (Pki, AgentProcess, ApiClient) {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let client = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client(role))))
        .await
        .unwrap_or_else(|error| panic!("{role} connects: {error}"));
    (pki, agent, client)
}

#[tokio::test]
async fn the_check_catches_a_body_that_breaks_the_schema() {
    let doc = document();
    let (_pki, _agent, mut reader) = agent_with_client("reader").await;
    let mut reply = reader.get("/v1/node").await.expect("reply");
    assert!(violations(&doc, "/v1/node", "get", &reply).is_empty());
    let mut node = reply.json();
    node["phase"] = Value::from("Sleeping");
    node["components"][0]["observed_version"] = Value::from("one.two");
    node["extra"] = Value::from(true);
    reply.body = Bytes::from(serde_json::to_vec(&node).expect("serializes"));
    let errors = violations(&doc, "/v1/node", "get", &reply);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[tokio::test]
async fn real_responses_validate_against_the_document() {
    let doc = document();
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let connect = |name: &str| ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client(name))));
    let mut reader = connect("reader").await.expect("reader connects");
    let mut operator = connect("operator").await.expect("operator connects");
    let mut admin = connect("admin").await.expect("admin connects");

    for path in ["/healthz", "/metrics", "/v1/node", "/v1/operations"] {
        let reply = reader.get(path).await.expect("reply");
        assert_eq!(reply.status, 200, "{path}");
        assert_conforms(&doc, path, "get", &reply);
    }
    assert_conforms(&doc, "/v1/operations/{id}", "get", &reader.get("/v1/operations/op-1").await.expect("reply"));
    let invalid_id = reader.get("/v1/operations/not%20an%20id").await.expect("reply");
    assert_eq!(invalid_id.status, 400, "an invalid operation id is a malformed request");
    assert_conforms(&doc, "/v1/operations/{id}", "get", &invalid_id);

    let upgrade = r#"{"target_version": "v1.30.3", "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet",
        "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}], "request_token": "t-1"}"#;
    let posts: [(&str, &str, &str); 13] = [
        ("reader", "/v1/upgrades", upgrade),
        ("operator", "/v1/upgrades", upgrade),
        ("operator", "/v1/upgrades", "{\"target_version\": 1}"),
        ("operator", "/v1/upgrades", "{"),
        ("operator", "/v1/cordon", "{}"),
        ("operator", "/v1/uncordon", ""),
        ("operator", "/v1/drain", "{\"drain\": {\"timeout_seconds\": 60, \"on_timeout\": \"fail\"}}"),
        ("operator", "/v1/rollback", "{}"),
        ("admin", "/v1/rollback", "{}"),
        ("operator", "/v1/operations/{id}/cancel", "{}"),
        ("reader", "/v1/etcd/snapshot", "{}"),
        ("operator", "/v1/etcd/snapshot", ""),
        ("operator", "/v1/etcd/snapshot", "{\"dir\": \"/\"}"),
    ];
    for (who, template, body) in posts {
        let client = match who {
            "reader" => &mut reader,
            "operator" => &mut operator,
            _ => &mut admin,
        };
        let path = template.replace("{id}", "op-1");
        let reply = client.post_json(&path, body).await.expect("reply");
        assert_conforms(&doc, template, "post", &reply);
    }

    let no_etcd = reader.get("/v1/etcd/health").await.expect("reply");
    assert_eq!(no_etcd.status, 409, "an agent without [etcd] has no etcd to ask");
    assert_conforms(&doc, "/v1/etcd/health", "get", &no_etcd);

    let listed = reader.get("/v1/operations").await.expect("reply").json();
    let newest = listed["operations"][0]["id"].as_str().expect("an operation from the writes above").to_owned();
    let waited = reader.get(&format!("/v1/operations/{newest}?wait=10&after=Running")).await.expect("reply");
    assert_eq!(waited.status, 200, "a long poll answers the operation");
    assert_conforms(&doc, "/v1/operations/{id}", "get", &waited);
    let bad_wait = reader.get(&format!("/v1/operations/{newest}?wait=31")).await.expect("reply");
    assert_eq!(bad_wait.status, 422, "a wait past its bound is refused");
    assert_conforms(&doc, "/v1/operations/{id}", "get", &bad_wait);

    let wrong_method = reader.send(request(Method::DELETE, "/v1/node", &[], Bytes::new())).await.expect("reply");
    assert_eq!(wrong_method.status, 405);
    assert_conforms(&doc, "/v1/node", "get", &wrong_method);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_answered_after_its_preferred_wait_conforms() {
    let doc = document();
    let node = UpgradeNode::start("v1.30.2", "").await;
    let mut operator = node.client("operator").await;
    let body = upgrade_body("v1.30.3", &node.artifact("v1.30.3", true), None).to_string();
    let headers = [("content-type", "application/json"), ("prefer", "wait=10")];
    let reply = operator.send(request(Method::POST, "/v1/upgrades", &headers, Bytes::from(body))).await;
    let reply = reply.expect("reply");
    assert_eq!(reply.status, 202, "{}", reply.json());
    assert_eq!(reply.header("preference-applied").as_deref(), Some("wait=10"));
    assert_eq!(reply.json()["phase"], "Succeeded", "{}", reply.json());
    assert_conforms(&doc, "/v1/upgrades", "post", &reply);
}

/// Every operation of the document with its method.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "post"].contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn refusals_of_the_http_layer_are_documented() {
    let doc = document();
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("reader")));
    let many_headers: String = (0..101).map(|n| format!("x-filler-{n}: {n}\r\n")).collect();
    let cases: [(&str, String, u16); 5] = [
        ("a bad request line", "GET /v1/node HTTP/9.9 extra\r\nhost: upkeep\r\n\r\n".to_owned(), 400),
        (
            "a bad Content-Length",
            "POST /v1/cordon HTTP/1.1\r\nhost: upkeep\r\ncontent-length: ten\r\n\r\n".to_owned(),
            400,
        ),
        (
            "an unsupported Transfer-Encoding",
            "POST /v1/cordon HTTP/1.1\r\nhost: upkeep\r\ntransfer-encoding: gzip\r\n\r\n".to_owned(),
            400,
        ),
        ("a URI too long", format!("GET /v1/node?{} HTTP/1.1\r\nhost: upkeep\r\n\r\n", "a".repeat(70_000)), 414),
        ("too many headers", format!("GET /v1/node HTTP/1.1\r\nhost: upkeep\r\n{many_headers}\r\n"), 431),
    ];
    for (what, raw, status) in cases {
        let reply = send_raw(agent.addr, config.clone(), raw.as_bytes()).await.expect("an answer");
        assert_eq!(reply.status, status, "{what}");
        for (path, method, _) in operations(&doc) {
            let errors = violations(&doc, &path, &method, &reply);
            assert!(errors.is_empty(), "{what} on {method} {path}: {errors:?}");
        }
    }
}

#[tokio::test]
async fn write_endpoints_refuse_a_missing_required_body_and_any_body_but_an_object() {
    let doc = document();
    let (_pki, _agent, mut admin) = agent_with_client("admin").await;
    for (template, method, operation) in operations(&doc) {
        if method != "post" {
            continue;
        }
        let path = template.replace("{id}", "op-1");
        let required = operation["requestBody"]["required"] == true;
        let empty = admin.send(request(Method::POST, &path, &[], Bytes::new())).await.expect("reply");
        assert_conforms(&doc, &template, "post", &empty);
        if required {
            assert_eq!(
                empty.status,
                400,
                "POST {template} documents a required body: {}",
                String::from_utf8_lossy(&empty.body)
            );
        } else {
            assert!(![400, 422].contains(&empty.status), "POST {template} documents an optional body");
        }
        for body in ["[]", "[{\"request_token\": \"t-1\"}]", "\"text\"", "7"] {
            let reply = admin.post_json(&path, body).await.expect("reply");
            assert!([400, 422].contains(&reply.status), "POST {template} with {body} answered {}", reply.status);
            assert_conforms(&doc, &template, "post", &reply);
        }
    }
    // Nested objects too: a derived struct would take an array field by field.
    let artifact = r#"{"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}"#;
    for (path, body) in [
        ("/v1/drain", r#"{"drain": [null, null]}"#.to_owned()),
        ("/v1/drain", r#"{"drain": []}"#.to_owned()),
        ("/v1/upgrades", format!(r#"{{"target_version": "v1.30.3", "dry_run": true, "drain": [5], "artifacts": [{artifact}]}}"#)),
        ("/v1/upgrades", r#"{"target_version": "v1.30.3", "dry_run": true, "artifacts": [["kubelet", "file:///srv/kubelet", "00"]]}"#.to_owned()),
    ] {
        let reply = admin.post_json(path, &body).await.expect("reply");
        assert_eq!(reply.status, 422, "POST {path} with {body}: {}", String::from_utf8_lossy(&reply.body));
    }
}

/// The fields the server accepts in the object `body` leads to, as its refusal
/// of an unknown field names them.
async fn accepted_fields(client: &mut ApiClient, path: &str, body: &str) -> BTreeSet<String> {
    let reply = client.post_json(path, body).await.expect("reply");
    assert_eq!(reply.status, 422, "{path} {body}: {}", String::from_utf8_lossy(&reply.body));
    let message = reply.json()["error"]["details"][0]["message"].as_str().expect("detail message").to_owned();
    if message.contains("there are no fields") {
        return BTreeSet::new();
    }
    let expected = message.split_once("expected").map(|(_, names)| names).unwrap_or_else(|| panic!("{message}"));
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn documented_fields(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"].as_object().expect("properties").keys().cloned().collect()
}

#[tokio::test]
async fn every_field_the_server_accepts_is_documented() {
    let doc = document();
    let (_pki, _agent, mut admin) = agent_with_client("admin").await;
    let unknown = r#"{"zz_unknown": 1}"#;
    let mut checked = 0;
    for (template, method, operation) in operations(&doc) {
        let Some(reference) = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() else {
            continue;
        };
        assert_eq!(method, "post");
        let schema = reference.rsplit('/').next().expect("schema name");
        let path = template.replace("{id}", "op-1");
        assert_eq!(accepted_fields(&mut admin, &path, unknown).await, documented_fields(&doc, schema), "{template}");
        checked += 1;
    }
    assert_eq!(checked, 7, "every write endpoint documents its body");
    let artifact = r#"{"target_version": "v1.30.3", "artifacts": [{"zz_unknown": 1}]}"#;
    assert_eq!(accepted_fields(&mut admin, "/v1/upgrades", artifact).await, documented_fields(&doc, "Artifact"));
    let image = r#"{"target_version": "v1.30.3", "images": [{"zz_unknown": 1}]}"#;
    assert_eq!(accepted_fields(&mut admin, "/v1/upgrades", image).await, documented_fields(&doc, "ImageArtifact"));
    let drain = r#"{"drain": {"zz_unknown": 1}}"#;
    assert_eq!(accepted_fields(&mut admin, "/v1/drain", drain).await, documented_fields(&doc, "DrainOptions"));
}

#[tokio::test]
async fn an_upgrade_needs_an_artifact_or_an_image_as_documented() {
    let doc = document();
    let properties = &doc["components"]["schemas"]["UpgradeRequest"]["properties"];
    assert!(properties["artifacts"]["minItems"].is_null() && properties["images"]["minItems"].is_null());
    let description = properties["artifacts"]["description"].as_str().expect("described");
    assert!(description.contains("At least one artifact or one image"), "{description}");
    let (_pki, _agent, mut operator) = agent_with_client("operator").await;
    let names_the_count = |reply: &Reply| {
        reply.status == 422
            && reply.json()["error"]["details"]
                .as_array()
                .is_some_and(|details| details.iter().any(|d| d["field"] == "artifacts" && d["code"] == "empty"))
    };
    let none = r#"{"target_version": "v1.30.3", "dry_run": true}"#;
    let refused = operator.post_json("/v1/upgrades", none).await.expect("reply");
    assert!(names_the_count(&refused), "{}", String::from_utf8_lossy(&refused.body));
    let image = format!(
        r#"{{"target_version": "v1.30.3", "dry_run": true, "images": [{{"component": "etcd",
        "image": "registry.k8s.io/etcd:3.5.15-0@sha256:{}"}}]}}"#,
        "0".repeat(64)
    );
    let one_image = operator.post_json("/v1/upgrades", &image).await.expect("reply");
    assert!(!names_the_count(&one_image), "an image is enough: {}", String::from_utf8_lossy(&one_image.body));
    let tag_only =
        r#"{"target_version": "v1.30.3", "images": [{"component": "etcd", "image": "registry.k8s.io/etcd:3.5.15-0"}]}"#;
    let unpinned = operator.post_json("/v1/upgrades", tag_only).await.expect("reply");
    assert_eq!(unpinned.status, 422, "{}", String::from_utf8_lossy(&unpinned.body));
    assert!(String::from_utf8_lossy(&unpinned.body).contains("digest"));
}

/// Whether a reply is a 422 with a bounds detail (`out_of_range`, `too_long`,
/// `too_many`) for `field`.
fn refuses_bound(reply: &Reply, field: &str) -> bool {
    reply.status == 422
        && reply.json()["error"]["details"].as_array().is_some_and(|details| {
            details.iter().any(|d| {
                d["field"] == field && matches!(d["code"].as_str(), Some("out_of_range" | "too_long" | "too_many"))
            })
        })
}

#[tokio::test]
async fn the_documented_bounds_are_the_servers() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let bound = |schema: &str, field: &str, key: &str| {
        schemas[schema]["properties"][field][key].as_u64().unwrap_or_else(|| panic!("{schema}.{field} has a {key}"))
    };
    let (_pki, _agent, mut admin) = agent_with_client("admin").await;
    let artifact = serde_json::json!({"component": "absent", "source": "https://mirror.example/kubelet", "sha256": "0".repeat(64)});
    let body = |change: &dyn Fn(&mut Value)| {
        let mut body =
            serde_json::json!({"target_version": "v1.30.3", "dry_run": true, "artifacts": [artifact.clone()]});
        change(&mut body);
        body.to_string()
    };
    let mut check = async |what: &str, field: &str, at: String, past: String| {
        let reply = admin.post_json("/v1/upgrades", &at).await.expect("reply");
        assert!(!refuses_bound(&reply, field), "{what} at its bound: {}", String::from_utf8_lossy(&reply.body));
        let reply = admin.post_json("/v1/upgrades", &past).await.expect("reply");
        assert!(refuses_bound(&reply, field), "{what} past its bound: {}", String::from_utf8_lossy(&reply.body));
    };
    for name in ["timeout_seconds", "grace_period_seconds"] {
        let max = bound("DrainOptions", name, "maximum");
        let with = |value: u64| body(&|b: &mut Value| b["drain"] = serde_json::json!({ name: value }));
        check(name, &format!("drain.{name}"), with(max), with(max + 1)).await;
    }
    let min = bound("DrainOptions", "timeout_seconds", "minimum");
    let with = |value: u64| body(&|b: &mut Value| b["drain"] = serde_json::json!({ "timeout_seconds": value }));
    check("timeout_seconds minimum", "drain.timeout_seconds", with(min), with(min - 1)).await;
    let max = bound("DrainOptions", "skip_pod_selector", "maxLength") as usize;
    let with =
        |len: usize| body(&|b: &mut Value| b["drain"] = serde_json::json!({ "skip_pod_selector": "a".repeat(len) }));
    check("skip_pod_selector", "drain.skip_pod_selector", with(max), with(max + 1)).await;
    let max = bound("Artifact", "source", "maxLength") as usize;
    let source = |len: usize| {
        let prefix = "https://mirror.example/";
        body(&|b: &mut Value| {
            b["artifacts"][0]["source"] = format!("{prefix}{}", "a".repeat(len - prefix.len())).into()
        })
    };
    check("source", "artifacts[0].source", source(max), source(max + 1)).await;
    let max = bound("Artifact", "signature", "maxLength") as usize;
    let signature = |len: usize| body(&|b: &mut Value| b["artifacts"][0]["signature"] = "A".repeat(len).into());
    check("signature", "artifacts[0].signature", signature(max), signature(max + 1)).await;
    let max = bound("UpgradeRequest", "artifacts", "maxItems") as usize;
    let count = |n: usize| body(&|b: &mut Value| b["artifacts"] = Value::Array(vec![artifact.clone(); n]));
    check("artifacts", "artifacts", count(max), count(max + 1)).await;
}
