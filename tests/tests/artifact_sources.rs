//! Artifact sources and staged files through a real agent: PreCheck asks each
//! `https://` source whether it is there (a HEAD, bounded in time) instead of
//! assuming it; a Stage stuck on a source that never delivers leaves nothing
//! behind when its step timeout cuts it off (no reader left on the source, no
//! partial file); prestaged files are bounded.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use upkeep_net::tls::{read_certificates, read_private_key, server_config_without_client_auth};
use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{Artifact, component_artifact, setup, step_statuses, upgrade_body, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);

/// An HTTPS artifact server with the test CA's certificate: `/kubelet` is
/// there, anything else is 404. Returns its base URL and the requests it saw.
async fn artifact_server(pki: &Pki) -> (String, Arc<Mutex<Vec<String>>>) {
    let chain = read_certificates(&pki.file("node.crt"), "certificate").expect("certificate");
    let key = read_private_key(&pki.file("node.key")).expect("key");
    let config = server_config_without_client_auth(chain, key).expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        log.lock().expect("log").push(format!("{} {}", request.method(), request.uri().path()));
                        let mut response = Response::new(Full::new(Bytes::from_static(b"kubelet bytes")));
                        if request.uri().path() != "/kubelet" {
                            *response.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (format!("https://localhost:{port}"), seen)
}

async fn dry_run(client: &mut ApiClient, source: &str) -> serde_json::Value {
    let body = serde_json::json!({"target_version": "v1.30.3", "dry_run": true,
        "artifacts": [{"component": "kubelet", "source": source, "sha256": "1".repeat(64)}]});
    let reply = client.post_json("/v1/upgrades", &body.to_string()).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    wait_for_end(client, reply.json()["id"].as_str().expect("id"), WITHIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_asks_each_https_source() {
    let pki = Pki::new();
    let (base, seen) = artifact_server(&pki).await;
    let port = start_health_server().await;
    let extra = format!("[artifacts]\nca_file = \"{}\"\n", pki.ca_cert().display());
    let agent = AgentProcess::start_with(&pki, &setup("v1.30.2", port, &extra));
    let mut operator = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("operator"))))
        .await
        .expect("connects");

    let missing = dry_run(&mut operator, &format!("{base}/missing")).await;
    assert_eq!(missing["phase"], "Failed", "{missing:#}");
    let detail = &missing["errors"][0]["details"][0];
    assert_eq!(detail["code"], "artifact_unreachable");
    assert!(detail["message"].as_str().is_some_and(|m| m.contains("404")), "{detail}");

    let present = dry_run(&mut operator, &format!("{base}/kubelet")).await;
    assert_eq!(present["phase"], "Succeeded", "{present:#}");
    assert_eq!(step_statuses(&present)[0], "PreCheck:Success");
    assert_eq!(*seen.lock().expect("log"), ["HEAD /missing", "HEAD /kubelet"], "asked with HEAD, nothing fetched");
}

/// Whether anything holds `fifo` open for reading (or waits to).
fn has_reader(fifo: &Path) -> bool {
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(fifo);
    match opened {
        Ok(_) => true,
        Err(error) => {
            assert_eq!(error.raw_os_error(), Some(nix::libc::ENXIO), "{error}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_cut_off_by_its_timeout_leaves_no_reader_and_no_partial_file() {
    let pki = Pki::new();
    let port = start_health_server().await;
    let agent = AgentProcess::start_with(&pki, &setup("v1.30.2", port, "stage_secs = 1\n"));
    let mut operator = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("operator"))))
        .await
        .expect("connects");
    let sources = tempfile::tempdir().expect("tempdir");
    let fifo = sources.path().join("never-written");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let body = serde_json::json!({"target_version": "v1.30.3",
        "artifacts": [{"component": "kubelet", "source": format!("file://{}", fifo.display()), "sha256": "1".repeat(64)}]});
    let reply = operator.post_json("/v1/upgrades", &body.to_string()).await.expect("reply");
    let operation = wait_for_end(&mut operator, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Failed", "{operation:#}");
    assert_eq!(operation["errors"][0]["details"][0]["code"], "step_timeout");
    assert!(!has_reader(&fifo), "the timed-out stage still holds the FIFO");
    let work = agent.kubelet_path().with_file_name(".upkeep");
    let left: Vec<_> =
        std::fs::read_dir(&work).map(|entries| entries.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the timed-out stage left files behind: {left:?}");
}

fn staged_names(agent: &AgentProcess) -> Vec<String> {
    let work = agent.kubelet_path().with_file_name(".upkeep");
    let mut names: Vec<String> = std::fs::read_dir(&work)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|name| name.ends_with(".staged") || name.ends_with(".partial"));
    names.sort();
    names
}

async fn stage_only(client: &mut ApiClient, version: &str, artifact: &Artifact) {
    let mut body = upgrade_body(version, artifact, None);
    body["stage_only"] = true.into();
    let reply = client.post_json("/v1/upgrades", &body.to_string()).await.expect("reply");
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    let operation = wait_for_end(client, reply.json()["id"].as_str().expect("id"), WITHIN).await;
    assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestaged_files_are_bounded_and_leftovers_removed() {
    let pki = Pki::new();
    let port = start_health_server().await;
    let agent = AgentProcess::start_with(&pki, &setup("v1.30.2", port, "[artifacts]\nkeep_prestaged = 1\n"));
    let mut operator = ApiClient::connect(agent.addr, client_config(&pki.ca_cert(), Some(&pki.client("operator"))))
        .await
        .expect("connects");
    let sources = tempfile::tempdir().expect("tempdir");
    let first = component_artifact(sources.path(), "kubelet", "v1.30.3", true);
    let second = component_artifact(sources.path(), "kubelet", "v1.30.3", false);
    let third = component_artifact(sources.path(), "kubelet", "v1.30.4", true);
    let staged = |artifact: &Artifact| format!("kubelet.{}.staged", artifact.sha256);

    stage_only(&mut operator, "v1.30.3", &first).await;
    assert_eq!(staged_names(&agent), [staged(&first)]);
    let work = agent.kubelet_path().with_file_name(".upkeep");
    let leftover_partial = ".kubelet.0000.staged.partial";
    let misnamed = format!("kubelet.{}.staged", &first.sha256[..16]);
    std::fs::write(work.join(leftover_partial), b"cut off").expect("write");
    std::fs::write(work.join(&misnamed), b"old naming").expect("write");

    stage_only(&mut operator, "v1.30.3", &second).await;
    let mut expected = vec![staged(&first), staged(&second)];
    expected.sort();
    assert_eq!(staged_names(&agent), expected, "one prestaged file kept beside the new one; leftovers removed");

    stage_only(&mut operator, "v1.30.4", &third).await;
    let mut expected = vec![staged(&second), staged(&third)];
    expected.sort();
    assert_eq!(staged_names(&agent), expected, "the oldest prestaged file went");
}
