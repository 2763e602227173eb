//! Every error from the real agent comes in the one envelope with a stable code,
//! and no request, however malformed, gets a 500.

use bytes::Bytes;
use hyper::Method;
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, Reply, client_config, request};
use upkeep_tests::pki::Pki;

/// A valid upgrade request; its `file://` source is inside the test agents'
/// file root (it need not exist for the checks made before anything runs).
fn valid_upgrade() -> String {
    let source = format!("file://{}", std::env::temp_dir().join("kubelet").display());
    format!(
        r#"{{"target_version": "v1.30.3", "artifacts": [{{"component": "kubelet",
        "source": "{source}", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}}]}}"#
    )
}

async fn client(pki: &Pki, agent: &AgentProcess, name: &str) -> ApiClient {
    ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client(name)))).await.expect("connects")
}

fn assert_envelope(reply: &Reply, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(reply.status, status, "body: {}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type").as_deref(), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only the error key: {body}");
    body
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut reader = client(&pki, &agent, "reader").await;
    assert_envelope(&reader.get("/v2/node").await.expect("reply"), 404, "not_found");
    assert_envelope(&reader.get("/v1/node/").await.expect("reply"), 404, "not_found");
    assert_envelope(&reader.get("/v1/operations/op-404").await.expect("reply"), 404, "not_found");
    assert_envelope(&reader.get("/v1/operations/%ZZ%00").await.expect("reply"), 404, "not_found");
    let delete = reader.send(request(Method::DELETE, "/v1/node", &[], Bytes::new())).await.expect("reply");
    assert_envelope(&delete, 405, "method_not_allowed");
    assert_eq!(delete.header("allow").as_deref(), Some("GET"));
    let get_upgrades = reader.get("/v1/upgrades").await.expect("reply");
    assert_envelope(&get_upgrades, 405, "method_not_allowed");
    assert_eq!(get_upgrades.header("allow").as_deref(), Some("POST"));
    let node = reader.get("/v1/node?watch=true").await.expect("reply");
    assert_eq!(node.status, 200, "a query string does not change the route");
}

#[tokio::test]
async fn write_bodies_are_checked_before_anything_else() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "[server]\nmax_body_bytes = 2048\n");
    let mut operator = client(&pki, &agent, "operator").await;

    let truncated = operator.post_json("/v1/upgrades", "{\"target_version\": ").await.expect("reply");
    assert_envelope(&truncated, 400, "malformed_request");

    let plain = request(Method::POST, "/v1/upgrades", &[("content-type", "text/plain")], Bytes::from_static(b"hello"));
    assert_envelope(&operator.send(plain).await.expect("reply"), 415, "unsupported_media_type");

    let huge = format!("{{\"target_version\": \"{}\"}}", "9".repeat(4096));
    assert_envelope(&operator.post_json("/v1/upgrades", &huge).await.expect("reply"), 413, "payload_too_large");

    let bad_version =
        operator.post_json("/v1/upgrades", &valid_upgrade().replace("v1.30.3", "one.two")).await.expect("reply");
    let body = assert_envelope(&bad_version, 422, "validation_failed");
    assert_eq!(body["error"]["details"][0]["field"], "target_version");

    let bad_digest =
        operator.post_json("/v1/upgrades", &valid_upgrade().replace("0000000000", "XYZ")).await.expect("reply");
    let body = assert_envelope(&bad_digest, 422, "validation_failed");
    assert_eq!(body["error"]["details"][0]["field"], "artifacts[0].sha256");

    let unknown_field = operator.post_json("/v1/cordon", r#"{"request_tokn": "a"}"#).await.expect("reply");
    assert_envelope(&unknown_field, 422, "validation_failed");

    let forced =
        operator.post_json("/v1/upgrades", &valid_upgrade().replace("{\"target", "{\"force\": true, \"target")).await;
    let body = assert_envelope(&forced.expect("reply"), 403, "forbidden");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("upkeep:admin")));

    let rollback = operator.post_json("/v1/rollback", "{}").await.expect("reply");
    assert_envelope(&rollback, 403, "forbidden");

    let stale = request(
        Method::POST,
        "/v1/upgrades",
        &[("content-type", "application/json"), ("if-match", "\"stale\"")],
        Bytes::from(valid_upgrade()),
    );
    assert_envelope(&operator.send(stale).await.expect("reply"), 412, "precondition_failed");

    let cancel = operator.post_json("/v1/operations/op-1/cancel", "").await.expect("reply");
    assert_envelope(&cancel, 404, "not_found");
}

#[tokio::test]
async fn no_request_gets_a_500() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut admin = client(&pki, &agent, "admin").await;
    let methods =
        [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS, Method::HEAD];
    let paths = [
        "/",
        "/v1",
        "/v1/node",
        "/v1/upgrades",
        "/v1/operations",
        "/v1/operations/x",
        "/v1/operations/x/cancel",
        "/v1/operations//cancel",
        "/v1/rollback",
        "/v1/cordon",
        "/v1/uncordon",
        "/v1/drain",
        "/healthz",
        "/metrics",
        "/v1/node/../node",
        "/%2e%2e/etc/passwd",
    ];
    let bodies: [&[u8]; 7] = [
        b"",
        b"{}",
        b"null",
        b"[]",
        b"{\"target_version\": 5}",
        b"\xff\xfe\x00garbage",
        b"{\"drain\": {\"timeout_seconds\": -1}}",
    ];
    let mut seen = 0;
    for method in &methods {
        for path in paths {
            for body in bodies {
                let probe =
                    request(method.clone(), path, &[("content-type", "application/json")], Bytes::from_static(body));
                let reply = admin.send(probe).await.expect("the agent answers");
                assert_ne!(reply.status, 500, "{method} {path} {body:?}");
                assert!(reply.status < 500 || reply.status == 503, "{method} {path} {body:?}: {}", reply.status);
                if reply.status >= 400 && *method != Method::HEAD {
                    let _ =
                        assert_envelope(&reply, reply.status, reply.json()["error"]["code"].as_str().unwrap_or("?"));
                }
                seen += 1;
            }
        }
    }
    assert_eq!(seen, methods.len() * paths.len() * bodies.len());
    let node = admin.get("/v1/node").await.expect("still serving");
    assert_eq!(node.status, 200);
}
