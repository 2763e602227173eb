//! A stand-in kubelet for static pods on a real directory: like the real one it
//! runs every non-hidden file of the manifest directory, picks a changed
//! manifest up on its next look, and reports each pod's container through the
//! fake API server as a mirror pod (`NAME-NODE` in the manifest's namespace).
//! An image listed as crash-looping never becomes Ready and keeps restarting.
//! It also serves `/readyz` and `/version` over HTTPS for the kube-apiserver
//! it runs, as the real API server would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use upkeep_coordinator::certs::{CertificateAuthority, Validity};
use upkeep_net::tls::{parse_certificates, parse_private_key, server_config_without_client_auth};
use yaml_rust2::YamlLoader;

use crate::kube_api::server::{FakeApiError, FakeApiServer};
use crate::kube_api::state::ApiState;

/// How often the manifest directory is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// One pod as the stand-in runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    /// The manifest's `metadata.name`.
    pub name: String,
    /// Its first container's name.
    pub container: String,
    /// The image it runs.
    pub image: String,
    /// Whether the container is Ready.
    pub ready: bool,
    /// How often it was restarted.
    pub restarts: u32,
    /// The file it was read from.
    pub file: PathBuf,
}

/// A running stand-in kubelet; stopped on drop.
pub struct StaticPodKubelet {
    task: JoinHandle<()>,
    server: JoinHandle<()>,
    pods: Arc<Mutex<BTreeMap<String, RunningPod>>>,
    /// The HTTPS address serving `/readyz` and `/version`.
    pub addr: SocketAddr,
    /// The CA (PEM) that signed the HTTPS certificate.
    pub ca_pem: String,
}

impl Drop for StaticPodKubelet {
    fn drop(&mut self) {
        self.task.abort();
        self.server.abort();
    }
}

impl StaticPodKubelet {
    /// The pods it runs, by manifest name.
    pub fn pods(&self) -> BTreeMap<String, RunningPod> {
        self.pods.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl FakeApiServer {
    /// Runs the static pods of `manifests` for node `node`; images whose text
    /// contains one of `crash_looping` never become Ready.
    pub async fn run_static_pods(
        &self,
        manifests: PathBuf,
        node: &str,
        crash_looping: Vec<String>,
    ) -> Result<StaticPodKubelet, FakeApiError> {
        let pods = Arc::new(Mutex::new(BTreeMap::new()));
        let (listener, acceptor, ca_pem) = https_listener().await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener, acceptor, pods.clone()));
        let (state, running, node) = (self.shared_state(), pods.clone(), node.to_owned());
        let task = tokio::spawn(async move {
            loop {
                look(&manifests, &node, &crash_looping, &running, &state);
                tokio::time::sleep(LOOK_EVERY).await;
            }
        });
        Ok(StaticPodKubelet { task, server, pods, addr, ca_pem })
    }
}

/// One look at the directory: start what changed, restart what crash-loops,
/// stop what went, and report every pod.
fn look(
    manifests: &Path,
    node: &str,
    crash_looping: &[String],
    running: &Mutex<BTreeMap<String, RunningPod>>,
    state: &Mutex<ApiState>,
) {
    let mut found = BTreeMap::new();
    for file in manifest_files(manifests) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if let Some((name, namespace, container, image)) = read_pod(&text) {
            found.insert(name.clone(), (namespace, container, image, file));
        }
    }
    let mut running = running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    running.retain(|name, _| found.contains_key(name));
    for (name, (namespace, container, image, file)) in found {
        let crashes = crash_looping.iter().any(|marker| image.contains(marker.as_str()));
        let pod = running.entry(name.clone()).or_insert_with(|| RunningPod {
            name: name.clone(),
            container: container.clone(),
            image: image.clone(),
            ready: false,
            restarts: 0,
            file: file.clone(),
        });
        if pod.image != image {
            *pod = RunningPod { name: name.clone(), container, image, ready: false, restarts: 0, file };
        }
        if crashes {
            pod.restarts = pod.restarts.saturating_add(1);
            pod.ready = false;
        } else {
            pod.ready = true;
        }
        let status = json!({"name": pod.container, "image": pod.image, "imageID": crate::static_pods::runtime_image_id(&pod.image),
                            "ready": pod.ready, "restartCount": pod.restarts, "started": pod.ready});
        let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.report_mirror_pod(&namespace, &format!("{name}-{node}"), node, vec![status]);
        if name == "kube-apiserver"
            && pod.ready
            && let Some(version) = upkeep_common::image::version_of_image(&pod.image)
        {
            state.report_api_server(node, &version.to_string());
        }
    }
}

/// Every non-hidden regular file of the directory, as kubelet reads it.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// The pod's name, namespace, first container and its image.
pub(crate) fn read_pod(text: &str) -> Option<(String, String, String, String)> {
    let documents = YamlLoader::load_from_str(text).ok()?;
    let pod = documents.first()?;
    let container = &pod["spec"]["containers"][0];
    Some((
        pod["metadata"]["name"].as_str()?.to_owned(),
        pod["metadata"]["namespace"].as_str().unwrap_or("kube-system").to_owned(),
        container["name"].as_str()?.to_owned(),
        container["image"].as_str()?.to_owned(),
    ))
}

async fn https_listener() -> Result<(TcpListener, TlsAcceptor, String), FakeApiError> {
    let ca = CertificateAuthority::generate("stand-in control plane CA", Validity::days_from_now(2))?;
    let issued = ca.issue_server("kube-apiserver", &["127.0.0.1".to_owned()], Validity::days_from_now(2))?;
    let tls = |error: &dyn std::fmt::Display| FakeApiError::Tls(error.to_string());
    let chain = parse_certificates(issued.cert_pem.as_bytes(), "certificate").map_err(|e| tls(&e))?;
    let key = parse_private_key(issued.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let config = server_config_without_client_auth(chain, key).map_err(|e| tls(&e))?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    Ok((listener, TlsAcceptor::from(Arc::new(config)), ca.cert_pem().to_owned()))
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, pods: Arc<Mutex<BTreeMap<String, RunningPod>>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, pods) = (acceptor.clone(), pods.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let api_server = pods.lock().unwrap_or_else(|p| p.into_inner()).get("kube-apiserver").cloned();
                async move { Ok::<_, std::convert::Infallible>(answer(request.uri().path(), api_server)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(path: &str, api_server: Option<RunningPod>) -> Response<Full<Bytes>> {
    let (status, body) = match (path, api_server) {
        (_, None) => (503, "no kube-apiserver runs".to_owned()),
        (_, Some(pod)) if !pod.ready => (503, format!("{} is not ready", pod.image)),
        ("/readyz", Some(_)) => (200, "ok".to_owned()),
        ("/version", Some(pod)) => {
            let tag = upkeep_common::image::version_of_image(&pod.image).map(|v| v.to_string()).unwrap_or_default();
            (200, json!({"gitVersion": tag}).to_string())
        }
        _ => (404, "not found".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NOT_FOUND);
    response
}
