//! The rollout driven through the coordinator service, as a platform would:
//! the service runs in this process on an embedded store in a temporary
//! directory, with the fleet's inventory and a one-release catalog; the
//! upgrade is started through its HTTPS API and followed through its event
//! stream. With a kill point, the service is dropped with its tasks when that
//! share of the nodes is done (nothing reaches a safe point) and a new one is
//! opened on the same store and address; the stream picks up after the last
//! event seen.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use upkeep_coordinator::client::tls_config;
use upkeep_coordinator::inventory::Inventory;
use upkeep_coordinator::journal::Journal;
use upkeep_coordinator::report::{Counters, Event, Summary};
use upkeep_coordinator::service::api::ServiceHandler;
use upkeep_coordinator::service::app::ServiceApp;
use upkeep_coordinator::service::cluster::ServiceSettings;
use upkeep_coordinator::service::config::{ClusterConfig, Policy, ServiceConfig, StoreConfig, TlsFiles};
use upkeep_coordinator::service::model::{EventKind, RoleCounters, UpdateEvent};
use upkeep_coordinator::service::records::Records;
use upkeep_coordinator::service_client::{ServiceClient, ServiceSettings as ClientSettings, UpgradeRequest};
use upkeep_coordinator::store::Store;
use upkeep_coordinator::store::embedded::EmbeddedStore;
use upkeep_net::{ServerCredentials, ServerLimits, TlsPaths};

use crate::fleet::Fleet;
use crate::pki::ServiceFiles;
use crate::recorder::Recorder;
use crate::run::{RunConfig, RunError};

/// The cluster's name in the service.
const CLUSTER: &str = "sim";
/// How often the cluster is read while the update runs.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// What the service did.
pub struct ServiceDriven {
    /// The counters and errors as the service reports them.
    pub summary: Summary,
    /// The update's rollout journal, from the service's store.
    pub journal: Journal,
    /// Times the service was killed and opened again.
    pub restarts: usize,
    /// Batches the store committed (one fsync each).
    pub store_commits: u64,
    /// Keys the store wrote.
    pub store_writes: u64,
    /// Each workflow task's duration in ms.
    pub tasks_ms: std::collections::BTreeMap<String, f64>,
    /// Latencies of `GET /v1/clusters/{cluster}` during the update, in ms.
    pub cluster_get_ms: Vec<f64>,
    /// How long after its stamp each event arrived, in ms.
    pub event_lag_ms: Vec<f64>,
    /// From a kill to the first event of the service opened again, in ms.
    pub resumed_after_ms: Option<f64>,
}

fn failed(error: impl std::fmt::Display) -> RunError {
    RunError::Coordinator(error.to_string())
}

/// A running service and the way to stop its server.
struct Running {
    app: Arc<ServiceApp>,
    stop_server: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    config: &ServiceConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    settings: &ServiceSettings,
) -> Result<Running, RunError> {
    let app = ServiceApp::open_on(config, settings.clone(), store).await.map_err(failed)?;
    let paths = TlsPaths {
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        client_ca: config.tls.client_ca.clone(),
        reload_interval: None,
    };
    let credentials = Arc::new(ServerCredentials::load(paths).map_err(failed)?);
    let (stop_server, stopped) = oneshot::channel::<()>();
    let handler = Arc::new(ServiceHandler { app: app.clone() });
    let server = tokio::spawn(upkeep_net::serve(listener, credentials, ServerLimits::default(), handler, async {
        let _ = stopped.await;
    }));
    Ok(Running { app, stop_server, server })
}

/// Writes the catalog of one release, `config.to`, with the simulated kubelet
/// and the control plane's static-pod images.
fn write_catalog(path: &Path, config: &RunConfig) -> Result<(), RunError> {
    let text = crate::catalog::one_release(&config.to, &crate::run::release_images(config));
    std::fs::write(path, text).map_err(failed)
}

/// The recorder's view of the service's node events, at the times the
/// service gave them (they arrive in batches, as they are stored).
fn record(recorder: &mut Recorder, event: &UpdateEvent) {
    let ago = (chrono::Utc::now() - event.at).to_std().unwrap_or_default();
    let at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
    match &event.kind {
        EventKind::NodeStarted { node } => {
            recorder.event_at(&Event::NodeStarted { node: node.clone(), operation: None }, at);
        }
        EventKind::NodeFinished { node, outcome, counters, .. } => {
            let finished = Event::NodeFinished {
                node: node.clone(),
                outcome: outcome.clone(),
                error: None,
                counters: total(counters),
            };
            recorder.event_at(&finished, at);
        }
        EventKind::Task { .. } | EventKind::Halted { .. } | EventKind::Status { .. } => {}
    }
}

fn total(counters: &RoleCounters) -> Counters {
    let (a, b) = (counters.control_plane, counters.workers);
    Counters {
        patched: a.patched + b.patched,
        skipped: a.skipped + b.skipped,
        pending: a.pending + b.pending,
        error: a.error + b.error,
    }
}

/// What the service needs of the fleet, owned, so the service may run on a
/// runtime of its own.
pub struct ServiceInputs {
    /// The fleet's inventory.
    pub inventory: Inventory,
    /// The service's and the platform's TLS files.
    pub tls: ServiceFiles,
}

impl ServiceInputs {
    /// The inputs for `fleet`: its inventory, and certificates issued by its CA.
    pub fn of(fleet: &Fleet) -> Result<ServiceInputs, RunError> {
        Ok(ServiceInputs { inventory: fleet.inventory.clone(), tls: fleet.pki.issue_service().map_err(failed)? })
    }
}

/// Rolls the fleet through the service; `kill_at` is the share of nodes
/// (percent) done when the service is killed once.
pub async fn drive(
    inputs: ServiceInputs,
    config: &RunConfig,
    recorder: &mut Recorder,
    kill_at: Option<u8>,
) -> Result<ServiceDriven, RunError> {
    let ServiceInputs { inventory: fleet_inventory, tls } = inputs;
    let dir = tempfile::tempdir().map_err(failed)?;
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, fleet_inventory.to_toml()).map_err(failed)?;
    let catalog = dir.path().join("releases.toml");
    write_catalog(&catalog, config)?;
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(failed)?;
    let address: SocketAddr = listener.local_addr().map_err(failed)?;
    let service_config = ServiceConfig {
        listen: address,
        state_dir: dir.path().join("state"),
        tls: TlsFiles { cert: tls.cert.clone(), key: tls.key.clone(), client_ca: tls.ca.clone() },
        store: StoreConfig::Embedded,
        clusters: vec![ClusterConfig {
            name: CLUSTER.parse().map_err(failed)?,
            inventory: vec![inventory],
            catalog,
            policy: Policy {
                max_unavailable: config.max_unavailable,
                max_failures: config.max_failures,
                per_zone: config.per_zone,
                soak: Duration::ZERO,
                prestage: config.prestage,
                node_timeout: Duration::from_secs(300),
            },
        }],
    };
    std::fs::create_dir_all(&service_config.state_dir).map_err(failed)?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&service_config.state_dir.join("coordinator.redb")).map_err(failed)?);
    let settings = ServiceSettings {
        concurrency: config.concurrency,
        poll_interval: config.poll_interval,
        ..ServiceSettings::default()
    };
    let mut running = start(&service_config, store.clone(), listener, &settings).await?;

    let client_tls = tls_config(&tls.ca, &tls.client_cert, &tls.client_key).map_err(failed)?;
    let client_settings = ClientSettings { stream_idle: Duration::from_secs(20), ..ClientSettings::default() };
    let client = ServiceClient::new(&format!("https://{address}"), client_tls, client_settings).map_err(failed)?;
    let request =
        UpgradeRequest { request_token: Some("upkeep-sim".to_owned()), ..UpgradeRequest::to(config.to.to_string()) };
    let answer = client.upgrade(CLUSTER, &request, None).await.map_err(failed)?;
    let id = answer.update.id.clone();

    let total_nodes = fleet_inventory.nodes.len().max(1);
    let (kill_sender, mut kill_receiver) = mpsc::channel::<()>(1);
    let reopened = Arc::new(AtomicBool::new(false));
    let seen_reopened = reopened.clone();
    let mut killed_at: Option<Instant> = None;
    let mut resumed_after_ms = None;
    let mut restarts = 0;
    let mut event_lag_ms = Vec::new();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut probes = tokio::task::JoinSet::new();
    probes.spawn(probe_cluster(client.clone(), latencies.clone()));
    let follow = client.follow_events(CLUSTER, &id, 1, |event| {
        let lag = (chrono::Utc::now() - event.at).to_std().unwrap_or_default();
        event_lag_ms.push(lag.as_secs_f64() * 1000.0);
        record(recorder, event);
        let done = recorder.done + recorder.failed;
        if kill_at.is_some_and(|percent| done * 100 >= usize::from(percent) * total_nodes) && killed_at.is_none() {
            killed_at = Some(Instant::now());
            let _ = kill_sender.try_send(());
        }
        if let (Some(at), None) = (killed_at, resumed_after_ms)
            && seen_reopened.load(Ordering::Relaxed)
        {
            resumed_after_ms = Some(at.elapsed().as_secs_f64() * 1000.0);
        }
    });
    let mut follow = Box::pin(follow);
    let ended = loop {
        tokio::select! {
            ended = &mut follow => break ended,
            Some(()) = kill_receiver.recv() => {
                running.app.abort().await;
                let _ = running.stop_server.send(());
                let _ = (&mut running.server).await;
                let listener = TcpListener::bind(address).await.map_err(failed)?;
                running = start(&service_config, store.clone(), listener, &settings).await?;
                restarts += 1;
                reopened.store(true, Ordering::Relaxed);
            }
        }
    };
    drop(follow);
    let update = ended.map_err(failed)?;
    probes.abort_all();
    let cluster_get_ms = std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
    running.app.stop().await;
    let _ = running.stop_server.send(());
    let _ = running.server.await;
    let journal = Records::new(store.clone()).journal(CLUSTER, &id).load().await.map_err(failed)?;
    let errors = journal.nodes.iter().filter_map(|node| node.error.clone()).collect();
    Ok(ServiceDriven {
        summary: Summary { counters: total(&update.counters), errors, halt: None },
        journal,
        restarts,
        store_commits: store.stats().commits,
        store_writes: store.stats().writes,
        tasks_ms: update
            .tasks
            .iter()
            .filter_map(|task| {
                let took = task.ended_at? - task.started_at?;
                Some((format!("{:?}", task.kind), took.num_microseconds().unwrap_or(0) as f64 / 1000.0))
            })
            .collect(),
        cluster_get_ms,
        event_lag_ms,
        resumed_after_ms,
    })
}

/// Reads the cluster every [`PROBE_INTERVAL`], adding each answer's latency to `latencies`.
async fn probe_cluster(client: ServiceClient, latencies: Arc<Mutex<Vec<f64>>>) {
    loop {
        let asked = Instant::now();
        if client.cluster(CLUSTER).await.is_ok() {
            let took = asked.elapsed().as_secs_f64() * 1000.0;
            latencies.lock().unwrap_or_else(PoisonError::into_inner).push(took);
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
