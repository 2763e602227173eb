//! The service's OpenAPI document (`coordinator/openapi.json`) against the
//! real `upkeep serve` over real agents: its paths, methods and roles are
//! exactly the router's, and real responses of every route, refusals
//! included, carry a status the document lists and validate against its
//! schema (the event stream line by line).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use upkeep_common::Role;
use upkeep_coordinator::service::api::ROUTES;
use upkeep_tests::client::{ApiClient, Reply, client_config, request};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::fleet::Fleet;
use upkeep_tests::openapi_check::{self, assert_conforms, method_key, schema_violations};
use upkeep_tests::service_process::{ServiceProcess, release, write_service};
use upkeep_tests::upgrades::kubelet_artifact;

fn document() -> Value {
    openapi_check::document("coordinator/openapi.json")
}

#[test]
fn document_paths_and_roles_are_exactly_the_routers() {
    let doc = document();
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|route| (route.path.to_owned(), method_key(route.method).to_owned())).collect();
    assert_eq!(openapi_check::documented_operations(&doc), served);
    for route in ROUTES {
        let expected = match route.role {
            None => "any",
            Some(Role::Reader) => "reader",
            Some(Role::Operator) => "operator",
            Some(Role::Admin) => "admin",
        };
        assert_eq!(doc["paths"][route.path][method_key(route.method)]["x-upkeep-role"], expected, "{}", route.path);
    }
}

/// Replies with `body` parsed as JSON lines, each checked against the document's line schema.
fn assert_lines_conform(doc: &Value, reply: &Reply) -> Vec<Value> {
    let template = "/v1/clusters/{cluster}/updates/{id}/events";
    let response = &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/x-ndjson"];
    let schema = &response["x-upkeep-line-schema"];
    assert!(schema.is_object(), "the stream documents its line schema");
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let mut events = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let errors = schema_violations(doc, schema, &event);
        assert!(errors.is_empty(), "{line}: {errors:#?}");
        events.push(event);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_of_every_route_validate_against_the_document() {
    let doc = document();
    let port = start_health_server().await;
    let fleet = Fleet::workers("v1.30.2", port, 2);
    let releases = release("1.30.3", &["stable"], &kubelet_artifact(fleet.dir.path(), "v1.30.3", true), &[]);
    let files = write_service(&fleet, "prod", &releases, "max_unavailable = \"1\"\n", "");
    let service = ServiceProcess::start(&files);
    let connect = |name: &str| {
        ApiClient::connect(service.addr, client_config(&fleet.pki.ca_cert(), Some(&fleet.pki.client(name))))
    };
    let mut reader = connect("reader").await.expect("reader connects");
    let mut operator = connect("operator").await.expect("operator connects");

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/clusters",
        "/v1/clusters/prod",
        "/v1/clusters/prod/nodes",
        "/v1/clusters/prod/updates",
    ] {
        let reply = reader.get(path).await.expect("reply");
        assert_eq!(reply.status, 200, "{path}");
        let template = path.replace("/prod", "/{cluster}");
        assert_conforms(&doc, &template, "get", &reply);
    }
    let missing = reader.get("/v1/clusters/nowhere").await.expect("reply");
    assert_eq!(missing.status, 404);
    assert_conforms(&doc, "/v1/clusters/{cluster}", "get", &missing);
    let wrong = reader.send(request(Method::DELETE, "/v1/clusters", &[], Bytes::new())).await.expect("reply");
    assert_eq!(wrong.status, 405);
    assert_conforms(&doc, "/v1/clusters", "get", &wrong);

    let upgrade = "/v1/clusters/{cluster}/upgrade";
    let body = r#"{"target_version": "1.30", "request_token": "conformance-1"}"#;
    for (who, body, status) in [
        ("reader", body, 403),
        ("operator", "{", 400),
        ("operator", r#"{"target_version": "1.29.1"}"#, 422),
        ("operator", r#"{"target_version": "1.30", "colour": "blue"}"#, 422),
    ] {
        let client = if who == "reader" { &mut reader } else { &mut operator };
        let reply = client.post_json("/v1/clusters/prod/upgrade", body).await.expect("reply");
        assert_eq!(reply.status, status, "{body}: {}", String::from_utf8_lossy(&reply.body));
        assert_conforms(&doc, upgrade, "post", &reply);
    }
    let stale = operator
        .send(request(
            Method::POST,
            "/v1/clusters/prod/upgrade",
            &[("content-type", "application/json"), ("if-match", "\"stale\"")],
            Bytes::from(body),
        ))
        .await
        .expect("reply");
    assert_eq!(stale.status, 412);
    assert_conforms(&doc, upgrade, "post", &stale);
    let empty_tag = operator
        .send(request(
            Method::POST,
            "/v1/clusters/prod/upgrade",
            &[("content-type", "application/json"), ("if-match", "")],
            Bytes::from(body),
        ))
        .await
        .expect("reply");
    assert_eq!(empty_tag.status, 400, "an empty If-Match is malformed, not a mismatch");
    assert_conforms(&doc, upgrade, "post", &empty_tag);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader.get("/v1/clusters/prod").await.expect("reply").json()["observed_kubernetes_version"].is_null() {
        assert!(Instant::now() < deadline, "the nodes are read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = operator.post_json("/v1/clusters/prod/upgrade", body).await.expect("reply");
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    assert_conforms(&doc, upgrade, "post", &accepted);
    let id = accepted.json()["update"]["id"].as_str().expect("id").to_owned();
    let busy = operator.post_json("/v1/clusters/prod/upgrade", r#"{"target_version": "1.30.3"}"#).await.expect("reply");
    assert_eq!(busy.status, 409);
    assert_conforms(&doc, upgrade, "post", &busy);
    let patch = |media: &'static str| {
        request(
            Method::PATCH,
            "/v1/clusters/prod",
            &[("content-type", media)],
            Bytes::from_static(br#"{"version": "1.30"}"#),
        )
    };
    for (media, status) in [("application/merge-patch+json", 409), ("text/plain", 415)] {
        let reply = operator.send(patch(media)).await.expect("reply");
        assert_eq!(reply.status, status, "{media}");
        assert_conforms(&doc, "/v1/clusters/{cluster}", "patch", &reply);
    }

    let update = format!("/v1/clusters/prod/updates/{id}");
    for action in ["pause", "resume"] {
        let reply = operator.post_json(&format!("{update}/{action}"), "{}").await.expect("reply");
        assert!([200, 409].contains(&reply.status), "{action}: {}", String::from_utf8_lossy(&reply.body));
        assert_conforms(&doc, &format!("/v1/clusters/{{cluster}}/updates/{{id}}/{action}"), "post", &reply);
    }
    let bad_from = reader.get(&format!("{update}/events?from=x")).await.expect("reply");
    assert_eq!(bad_from.status, 422);
    assert_conforms(&doc, "/v1/clusters/{cluster}/updates/{id}/events", "get", &bad_from);
    let stream = reader.get(&format!("{update}/events?from=1")).await.expect("the stream ends with the update");
    assert_eq!(stream.status, 200);
    assert_conforms(&doc, "/v1/clusters/{cluster}/updates/{id}/events", "get", &stream);
    let events = assert_lines_conform(&doc, &stream);
    assert!(events.iter().any(|e| e["event"] == "node_finished"), "{events:?}");
    let ended = reader.get(&update).await.expect("reply");
    assert_eq!(ended.status, 200);
    assert_conforms(&doc, "/v1/clusters/{cluster}/updates/{id}", "get", &ended);
    let unknown = reader.get("/v1/clusters/prod/updates/u0-none").await.expect("reply");
    assert_eq!(unknown.status, 404);
    assert_conforms(&doc, "/v1/clusters/{cluster}/updates/{id}", "get", &unknown);
    let late = operator.post_json(&format!("{update}/cancel"), "{}").await.expect("reply");
    assert_eq!(late.status, 409, "an ended update is not cancelled");
    assert_conforms(&doc, "/v1/clusters/{cluster}/updates/{id}/cancel", "post", &late);
    for path in ["/v1/clusters/prod", "/v1/clusters/prod/updates", "/v1/clusters/prod/nodes"] {
        let reply = reader.get(path).await.expect("reply");
        assert_conforms(&doc, &path.replace("/prod", "/{cluster}"), "get", &reply);
    }
    let rollback = "/v1/clusters/{cluster}/updates/{id}/rollback";
    let refused = operator.post_json(&format!("{update}/rollback"), "{}").await.expect("reply");
    assert_eq!(refused.status, 403, "a rollback is admin only");
    assert_conforms(&doc, rollback, "post", &refused);
    let mut admin = connect("admin").await.expect("admin connects");
    let unknown_field = admin.post_json(&format!("{update}/rollback"), r#"{"forse": true}"#).await.expect("reply");
    assert_eq!(unknown_field.status, 422);
    assert_conforms(&doc, rollback, "post", &unknown_field);
    let missing_release = admin.post_json(&format!("{update}/rollback"), "{}").await.expect("reply");
    assert_eq!(
        missing_release.status,
        422,
        "1.30.2 is not in this catalog: {}",
        String::from_utf8_lossy(&missing_release.body)
    );
    assert_conforms(&doc, rollback, "post", &missing_release);
}
