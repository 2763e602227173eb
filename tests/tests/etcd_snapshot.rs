//! etcd snapshots and health through a real agent against a real etcd (TLS,
//! client certificates required): the snapshot file is etcd's whole database
//! with etcd's own trailing sha256, its size and digest are the ones reported,
//! old snapshots are pruned; every failure answers in the envelope and leaves
//! no file. The tests that start etcd run one at a time.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use upkeep_tests::agent_process::{AgentProcess, AgentSetup};
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::etcd::Etcd;
use upkeep_tests::openapi_check::{self, assert_conforms};
use upkeep_tests::pki::Pki;

/// One etcd at a time: elections on two busy cores must not compete.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn agent_with(pki: &Pki, extra: String) -> AgentProcess {
    AgentProcess::start_with(pki, &AgentSetup { extra, ..AgentSetup::kubelet("v1.30.2") })
}

async fn client(pki: &Pki, agent: &AgentProcess, role: &str) -> ApiClient {
    ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client(role))))
        .await
        .unwrap_or_else(|error| panic!("{role} connects: {error}"))
}

/// Every entry of the agent's snapshot directory, hidden ones included.
fn snapshot_files(agent: &AgentProcess) -> Vec<String> {
    let dir = agent.dir().join("state").join("etcd-snapshots");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn a_snapshot_is_etcds_whole_database_with_its_own_digest() {
    let _one_etcd = SERIAL.lock().await;
    let doc = openapi_check::document("agent/openapi.json");
    let etcd = Etcd::start().await;
    for index in 0..20 {
        etcd.put(&format!("/registry/upkeep-key-{index}"), &format!("value-{index}")).await;
    }
    let pki = Pki::new();
    let agent = agent_with(&pki, etcd.config_table(&etcd.client_files(), "keep_snapshots = 2"));
    let mut operator = client(&pki, &agent, "operator").await;
    let mut reader = client(&pki, &agent, "reader").await;

    let reply = operator.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(reply.status, 200, "{}\n{}", String::from_utf8_lossy(&reply.body), agent.log());
    assert_conforms(&doc, "/v1/etcd/snapshot", "post", &reply);
    let info = reply.json();
    let path = Path::new(info["path"].as_str().expect("path"));
    assert_eq!(path.parent(), Some(agent.dir().join("state").join("etcd-snapshots").as_path()));
    assert_eq!(path.file_name().and_then(|n| n.to_str()), info["name"].as_str());
    let bytes = std::fs::read(path).expect("the snapshot file exists");
    assert_eq!(info["size"].as_u64(), Some(bytes.len() as u64), "the reported size is the file's");
    assert_eq!(info["sha256"].as_str(), Some(hex_sha256(&bytes).as_str()), "the reported sha256 is the file's");
    let (data, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(Sha256::digest(data).as_slice(), trailer, "etcd's trailing sha256 holds");
    assert!(
        data.windows(b"/registry/upkeep-key-7".len()).any(|window| window == b"/registry/upkeep-key-7"),
        "the keys put are in the snapshot"
    );
    assert_eq!(info["endpoint"].as_str(), Some(etcd.endpoint().as_str()));
    assert!(agent.log().contains("etcd snapshot taken"), "the write is audit-logged:\n{}", agent.log());

    let health = reader.get("/v1/etcd/health").await.expect("reply");
    assert_eq!(health.status, 200, "{}", String::from_utf8_lossy(&health.body));
    assert_conforms(&doc, "/v1/etcd/health", "get", &health);
    assert_eq!(health.json()["healthy"], true);

    let forbidden = reader.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(forbidden.status, 403, "a reader may not take snapshots");
    assert_conforms(&doc, "/v1/etcd/snapshot", "post", &forbidden);

    let mut names = vec![info["name"].as_str().expect("name").to_owned()];
    for _ in 0..2 {
        let reply = operator.post_json("/v1/etcd/snapshot", "").await.expect("reply");
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        names.push(reply.json()["name"].as_str().expect("name").to_owned());
    }
    assert_eq!(snapshot_files(&agent), names[1..], "only the newest two are kept, nothing else is left");
}

#[tokio::test]
async fn endpoints_are_tried_in_order_until_one_answers() {
    let _one_etcd = SERIAL.lock().await;
    let etcd = Etcd::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let table = etcd.config_table(&etcd.client_files(), "").replace(
        &format!("endpoints = [\"{}\"]", etcd.endpoint()),
        &format!("endpoints = [\"https://{closed}\", \"{}\"]", etcd.endpoint()),
    );
    assert!(table.contains(&closed.to_string()), "{table}");
    let pki = Pki::new();
    let agent = agent_with(&pki, table);
    let mut operator = client(&pki, &agent, "operator").await;
    let snapshot = operator.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(snapshot.status, 200, "{}", String::from_utf8_lossy(&snapshot.body));
    assert_eq!(snapshot.json()["endpoint"].as_str(), Some(etcd.endpoint().as_str()), "the second endpoint served it");
    let health = operator.get("/v1/etcd/health").await.expect("reply");
    assert_eq!(health.status, 200, "{}", String::from_utf8_lossy(&health.body));
    assert_eq!(health.json()["endpoint"].as_str(), Some(etcd.endpoint().as_str()));
    assert_eq!(health.json()["healthy"], true);
}

#[tokio::test]
async fn a_failed_snapshot_answers_503_and_leaves_no_file() {
    let _one_etcd = SERIAL.lock().await;
    let doc = openapi_check::document("agent/openapi.json");
    let mut etcd = Etcd::start().await;
    etcd.put("/registry/a", "b").await;
    let pki = Pki::new();

    let small = agent_with(&pki, etcd.config_table(&etcd.client_files(), "max_snapshot_bytes = 4096"));
    let reply = client(&pki, &small, "operator").await.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
    assert_conforms(&doc, "/v1/etcd/snapshot", "post", &reply);
    assert!(reply.json()["error"]["message"].as_str().unwrap_or_default().contains("larger than"));
    assert_eq!(snapshot_files(&small), Vec::<String>::new(), "no partial file is left");

    let agent = agent_with(&pki, etcd.config_table(&etcd.client_files(), ""));
    etcd.stop();
    let mut operator = client(&pki, &agent, "operator").await;
    let reply = operator.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(reply.status, 503, "{}", String::from_utf8_lossy(&reply.body));
    assert_conforms(&doc, "/v1/etcd/snapshot", "post", &reply);
    assert_eq!(reply.json()["error"]["code"], "dependency_unavailable");
    assert_eq!(snapshot_files(&agent), Vec::<String>::new(), "no file and no partial is left");
    let health = operator.get("/v1/etcd/health").await.expect("reply");
    assert_eq!(health.status, 503, "a stopped etcd is unavailable: {}", String::from_utf8_lossy(&health.body));
    assert_conforms(&doc, "/v1/etcd/health", "get", &health);
}

#[tokio::test]
async fn a_client_certificate_etcd_does_not_trust_is_refused_by_tls() {
    let _one_etcd = SERIAL.lock().await;
    let etcd = Etcd::start().await;
    let pki = Pki::new();
    let agent = agent_with(&pki, etcd.config_table(&pki.client("operator"), ""));
    let mut operator = client(&pki, &agent, "operator").await;
    for (method, path) in [("post", "/v1/etcd/snapshot"), ("get", "/v1/etcd/health")] {
        let reply = match method {
            "post" => operator.post_json(path, "{}").await,
            _ => operator.get(path).await,
        }
        .expect("reply");
        assert_eq!(reply.status, 503, "{path}: {}", String::from_utf8_lossy(&reply.body));
        let message = reply.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("TLS"), "{path}: the message names TLS: {message}");
    }
    assert_eq!(snapshot_files(&agent), Vec::<String>::new());
}

#[tokio::test]
async fn without_etcd_both_routes_answer_409() {
    let pki = Pki::new();
    let agent = agent_with(&pki, String::new());
    let mut operator = client(&pki, &agent, "operator").await;
    for reply in [
        operator.post_json("/v1/etcd/snapshot", "{}").await.expect("reply"),
        operator.get("/v1/etcd/health").await.expect("reply"),
    ] {
        assert_eq!(reply.status, 409);
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "conflict");
        assert!(error["message"].as_str().unwrap_or_default().contains("[etcd] is not configured"), "{error}");
    }
}

#[tokio::test]
async fn a_second_snapshot_while_one_runs_is_refused() {
    // An endpoint that accepts connections and never answers holds the first
    // snapshot until its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let (accepted, mut connected) = tokio::sync::mpsc::channel(4);
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = accepted.send(()).await;
        }
    });
    let pki = Pki::new();
    let table = format!(
        "[etcd]\nendpoints = [\"https://{silent_addr}\"]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         snapshot_timeout_secs = 3\n",
        pki.ca_cert().display(),
        pki.file("operator.crt").display(),
        pki.file("operator.key").display()
    );
    let agent = agent_with(&pki, table);
    let mut first = client(&pki, &agent, "operator").await;
    let mut second = client(&pki, &agent, "operator").await;
    let running = tokio::spawn(async move { first.post_json("/v1/etcd/snapshot", "{}").await.expect("reply") });
    tokio::time::timeout(Duration::from_secs(30), connected.recv())
        .await
        .expect("the first snapshot reaches the endpoint")
        .expect("the endpoint is held");

    let refused = second.post_json("/v1/etcd/snapshot", "{}").await.expect("reply");
    assert_eq!(refused.status, 409, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["error"]["code"], "conflict");
    let timed_out = running.await.expect("the first request ends");
    assert_eq!(timed_out.status, 503, "{}", String::from_utf8_lossy(&timed_out.body));
    assert_eq!(snapshot_files(&agent), Vec::<String>::new());
    holder.abort();
}
