//! Every error from the real agent comes in the one envelope with a stable code,
//! every reply is one the OpenAPI document lists for its path and method, and
//! no request, however malformed, stops the node from taking new work.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, Reply, client_config, request};
use upkeep_tests::curl::{curl, openssl_s_client};
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{kubelet_artifact, upgrade_body, wait_for_end};

/// How long the sweep waits for any one operation to end.
const WITHIN: Duration = Duration::from_secs(60);

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
    assert_envelope(&reader.get("/v1/operations/%ZZ%00").await.expect("reply"), 400, "malformed_request");
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

/// Requests the HTTP layer refuses before any route (most of them hyper
/// cannot parse), each with the status and code it must get.
fn refused_requests() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let many_headers: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    vec![
        ("a bad request line", "GARBAGE\r\n\r\n".to_owned(), "400", "malformed_request"),
        ("HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n".to_owned(), "400", "malformed_request"),
        ("two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_owned(), "400", "malformed_request"),
        (
            "a header without a colon",
            "GET /healthz HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n".to_owned(),
            "400",
            "malformed_request",
        ),
        ("an unknown HTTP version", "GET /healthz HTTP/7.1\r\nHost: a\r\n\r\n".to_owned(), "400", "malformed_request"),
        (
            "two different lengths",
            "POST /v1/cordon HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_owned(),
            "400",
            "malformed_request",
        ),
        (
            "too many header fields",
            format!("GET /healthz HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n"),
            "431",
            "headers_too_large",
        ),
        (
            "a target too long",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70_000)),
            "414",
            "uri_too_long",
        ),
    ]
}

#[test]
fn requests_the_http_layer_refuses_get_the_envelope() {
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    for (what, raw, status, code) in refused_requests() {
        let reply = openssl_s_client(&pki, agent.addr, Some("reader"), &["-quiet"], &raw);
        let output = &reply.output;
        let answer = &output[output.find("HTTP/1.1 ").unwrap_or_else(|| panic!("{what}: no answer: {output}"))..];
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{what}: {answer}"));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{what}: {head}");
        assert!(head.to_ascii_lowercase().contains("\r\ncontent-type: application/json"), "{what}: {head}");
        // openssl's own lines follow the body.
        let envelope: serde_json::Value = serde_json::Deserializer::from_str(body)
            .into_iter()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("{what}: no JSON body: {body:?}"));
        assert_eq!(envelope["error"]["code"], code, "{what}: {envelope}");
        assert!(envelope["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {envelope}");
    }
    let health = curl(&pki, agent.addr, Some("reader"), "/healthz", &[]);
    assert_eq!(health.status, Some(200), "the agent still answers: {health:?}");
}

/// The error codes the API defines for each error status, written here rather
/// than taken from the server.
const CODES_BY_STATUS: [(u16, &[&str]); 11] = [
    (400, &["malformed_request"]),
    (401, &["unauthenticated"]),
    (403, &["forbidden"]),
    (404, &["not_found"]),
    (405, &["method_not_allowed"]),
    (409, &["operation_in_progress", "conflict"]),
    (412, &["precondition_failed"]),
    (413, &["payload_too_large"]),
    (415, &["unsupported_media_type"]),
    (422, &["validation_failed", "version_refused"]),
    (503, &["dependency_unavailable"]),
];

/// What the OpenAPI document says about one request.
enum Documented {
    /// No documented path matches: 404.
    NoPath,
    /// The path is documented, but not with this method: 405.
    NoMethod,
    /// The documented statuses of the operation.
    Statuses(Vec<u16>),
}

/// Looks `method path` up in the OpenAPI document; a `{parameter}` matches
/// one non-empty path segment.
fn documented(document: &serde_json::Value, method: &Method, path: &str) -> Documented {
    let path = path.split('?').next().unwrap_or_default();
    let matches = |template: &str| {
        let (template, actual): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
        template.len() == actual.len()
            && template.iter().zip(&actual).all(|(t, a)| if t.starts_with('{') { !a.is_empty() } else { t == a })
    };
    let paths = document["paths"].as_object().expect("paths");
    let Some((_, item)) = paths.iter().find(|(template, _)| matches(template)) else { return Documented::NoPath };
    match item.get(method.as_str().to_ascii_lowercase()) {
        None => Documented::NoMethod,
        Some(operation) => Documented::Statuses(
            operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|status| status.parse().expect("a numeric status"))
                .collect(),
        ),
    }
}

/// Checks one reply against the document, independently of the server's
/// own idea of what it answered.
fn check_against_document(document: &serde_json::Value, method: &Method, path: &str, body: &[u8], reply: &Reply) {
    let what = format!("{method} {path} {:?}", String::from_utf8_lossy(body));
    let expected: Vec<u16> = match documented(document, method, path) {
        Documented::NoPath => vec![404],
        Documented::NoMethod => vec![405],
        Documented::Statuses(statuses) => statuses,
    };
    assert!(expected.contains(&reply.status), "{what}: {} is not one of the documented {expected:?}", reply.status);
    if reply.status >= 400 && *method != Method::HEAD {
        let codes = CODES_BY_STATUS.iter().find(|(status, _)| *status == reply.status).map_or(&[][..], |(_, c)| c);
        assert_eq!(reply.header("content-type").as_deref(), Some("application/json"), "{what}");
        let envelope = reply.json();
        let code = envelope["error"]["code"].as_str().unwrap_or_default();
        assert!(codes.contains(&code), "{what}: {} with code {code:?}, expected one of {codes:?}", reply.status);
        assert!(envelope["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {envelope}");
        assert!(envelope["error"]["details"].is_array(), "{what}: {envelope}");
        assert_eq!(envelope.as_object().map(|o| o.len()), Some(1), "{what}: only the error key: {envelope}");
    }
}

/// Waits until no operation is Pending or Running (any the sweep started
/// must end on its own), then runs a dry-run upgrade to its end: the engine
/// still takes and finishes new work.
async fn assert_takes_new_work(client: &mut ApiClient, dry_run: &str, after: &str) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let list = client.get("/v1/operations").await.expect("reply").json();
        let busy: Vec<_> = list["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .filter(|op| matches!(op["phase"].as_str(), Some("Pending" | "Running")))
            .map(|op| op["id"].clone())
            .collect();
        if busy.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "after {after}: {busy:?} never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = client.post_json("/v1/upgrades", dry_run).await.expect("reply");
    assert_eq!(reply.status, 202, "after {after}: {}", String::from_utf8_lossy(&reply.body));
    let operation = wait_for_end(client, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "after {after}: {operation:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_is_documented_and_the_node_keeps_working() {
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../../agent/openapi.json")).expect("the OpenAPI document");
    let pki = Pki::new();
    let agent = AgentProcess::start(&pki, "v1.30.2", "");
    let mut admin = client(&pki, &agent, "admin").await;
    let artifacts = tempfile::tempdir().expect("tempdir");
    let artifact = kubelet_artifact(artifacts.path(), "v1.30.3", true);
    let mut dry_run = upgrade_body("v1.30.3", &artifact, None);
    dry_run["dry_run"] = true.into();
    let dry_run = dry_run.to_string();
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
        "/v1/etcd/snapshot",
        "/v1/etcd/health",
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
    for method in &methods {
        for path in paths {
            for body in bodies {
                let probe =
                    request(method.clone(), path, &[("content-type", "application/json")], Bytes::from_static(body));
                let reply = admin.send(probe).await.expect("the agent answers");
                check_against_document(&document, method, path, body, &reply);
                assert_takes_new_work(&mut admin, &dry_run, &format!("{method} {path} {body:?}")).await;
            }
        }
    }
    let node = admin.get("/v1/node").await.expect("still serving");
    assert_eq!(node.status, 200);
}
