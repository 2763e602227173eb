//! The OpenAPI document (`agent/openapi.json`) against the real server: its
//! paths and methods are exactly the router's, and real responses, errors
//! included, carry a status the document lists and validate against its schema.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use upkeep_agent::server::routes::{ApiMethod, ROUTES};
use upkeep_common::Role;
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, Reply, client_config, request};
use upkeep_tests::pki::Pki;

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("openapi.json")).expect("valid JSON")
}

fn method_key(method: ApiMethod) -> &'static str {
    match method {
        ApiMethod::Get => "get",
        ApiMethod::Post => "post",
    }
}

#[test]
fn document_paths_are_exactly_the_routes() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|key| ["get", "post", "put", "delete", "patch", "head", "options"].contains(&key.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
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

/// Validates a reply against the schema the document gives for its status.
fn assert_conforms(doc: &Value, template: &str, method: &str, reply: &Reply) {
    let errors = violations(doc, template, method, reply);
    assert!(
        errors.is_empty(),
        "{method} {template} {}: {errors:#?}\nbody: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
}

/// What in a reply breaks the document's schema for its status.
fn violations(doc: &Value, template: &str, method: &str, reply: &Reply) -> Vec<String> {
    let responses = &doc["paths"][template][method]["responses"];
    let response = &responses[reply.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {} which the document does not list (it lists {:?})",
        reply.status,
        responses.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
    );
    let content_type = reply.header("content-type").unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim().to_owned();
    let content = &response["content"];
    let schema =
        if content[&content_type].is_object() { &content[&content_type]["schema"] } else { &content[&media]["schema"] };
    assert!(schema.is_object(), "{method} {template} {}: no schema for {media}", reply.status);
    if media != "application/json" {
        return Vec::new();
    }
    let mut rooted = schema.clone();
    rooted["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&rooted)
        .unwrap_or_else(|error| panic!("schema of {method} {template} {} does not compile: {error}", reply.status));
    let body = reply.json();
    validator.iter_errors(&body).map(|error| format!("{} at {}", error, error.instance_path())).collect()
}

#[tokio::test]
async fn the_check_catches_a_body_that_breaks_the_schema() {
    let doc = document();
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut reader = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("reader"))))
        .await
        .expect("connects");
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

    let upgrade = r#"{"target_version": "v1.30.3", "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet",
        "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}], "request_token": "t-1"}"#;
    let posts: [(&str, &str, &str); 10] = [
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

    let wrong_method = reader.send(request(Method::DELETE, "/v1/node", &[], Bytes::new())).await.expect("reply");
    assert_eq!(wrong_method.status, 405);
    assert_conforms(&doc, "/v1/node", "get", &wrong_method);
}
