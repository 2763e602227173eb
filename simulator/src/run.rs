//! One simulated rollout: derive the fault plan from the seed, start the fleet,
//! time the bare protocol, drive the real coordinator over mutual TLS (the
//! machines count every cordon and uncordon meanwhile), then check and report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use upkeep_common::Version;
use upkeep_common::api::{NodePhase, NodeRole, OperationKind, OperationPhase};
use upkeep_coordinator::client::{AgentClient, ClientSettings, tls_config};
use upkeep_coordinator::journal::Journal;
use upkeep_coordinator::plan::Limit;
use upkeep_coordinator::report::Summary;
use upkeep_coordinator::rollout::{DriverSettings, Rollout, RolloutSpec, RolloutStorage};

use crate::checks::control_plane::{ControlPlaneNode, check_control_plane};
use crate::checks::{FinalNode, check_run};
use crate::coordinator_cpu;
use crate::efficiency::{self, NodeTiming};
use crate::faults::FaultKind;
use crate::fleet::{Fleet, FleetPki, FleetSpec};
use crate::host::target_artifact;
use crate::recorder::Recorder;
use crate::report::ServiceFigures;
use crate::report::{Calibration, ChecksReport, ErrorGroup, Percentiles, Report, rss};
use crate::service_driver::{self, ServiceInputs};

/// Small requests per node in the bare-protocol calibration (a rollout makes about as many).
pub const CALIBRATION_REQUESTS: usize = 5;

pub use crate::run_config::{Driver, RunConfig};

/// Why a run could not happen (a failed check is not one: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The fleet could not start.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// The coordinator could not run.
    #[error("coordinator: {0}")]
    Coordinator(String),
}

/// Runs the simulation.
pub async fn run(config: &RunConfig) -> Result<Report, RunError> {
    let (_, artifacts) = target_artifact(&config.to);
    let spec = FleetSpec {
        nodes: config.nodes,
        control_planes: config.control_planes.min(config.nodes),
        zones: config.zones,
        from: config.from.clone(),
        target: config.to.clone(),
        address_offset: config.address_offset,
        hosted: 0..config.nodes,
    };
    let plan = spec.fault_plan(config.seed, config.fault_rate, &config.fault_kinds, config.latency);
    let (rss_before, _) = rss();
    let fleet = Fleet::start(&spec, &plan, artifacts, FleetPki::temporary()?).await?;
    let (rss_after, _) = rss();
    let rss_per_node_bytes = rss_after.saturating_sub(rss_before) / config.nodes.max(1) as u64;

    let tls = tls_config(&fleet.inventory.ca, &fleet.inventory.client_cert, &fleet.inventory.client_key)
        .map_err(|e| RunError::Coordinator(e.to_string()))?;
    let settings = ClientSettings {
        idle_per_node: 1,
        pool_idle_timeout: Duration::from_millis(250),
        ..ClientSettings::for_fleet(config.nodes)
    };
    let bare_protocol_s = calibrate(&fleet, AgentClient::new(tls.clone(), settings.clone()), config.concurrency).await;

    let total = config.nodes;
    let limit = config.max_unavailable.resolve_nonzero(total).max(1);
    let crash_watchers = fleet.restart_crashed_agents();
    let outages = fleet.schedule_outages();
    let recorder = Recorder::new(total, config.progress);
    let requests_before = fleet.requests_served();
    let started = Instant::now();
    let driven = match config.driver {
        Driver::Cli => drive_cli(&fleet, config, AgentClient::new(tls, settings), limit, recorder).await?,
        Driver::Service => {
            let inputs = ServiceInputs::of(&fleet)?;
            let owned = config.clone();
            let measured = coordinator_cpu::run_measured(async move {
                let mut recorder = recorder;
                let driven = service_driver::drive(inputs, &owned, &mut recorder, owned.kill_coordinator_at).await;
                (driven, recorder)
            });
            let ((driven, recorder), cpu_ms) = measured.await.map_err(|e| RunError::Coordinator(e.to_string()))?;
            let driven = driven?;
            Driven {
                summary: driven.summary,
                journal: driven.journal,
                recorder,
                cpu_ms,
                service: Some(ServiceFigures {
                    restarts: driven.restarts,
                    store_commits: driven.store_commits,
                    store_writes: driven.store_writes,
                    tasks_ms: driven.tasks_ms,
                    cluster_get_ms: Percentiles::of(driven.cluster_get_ms),
                    event_lag_ms: Percentiles::of(driven.event_lag_ms),
                    resumed_after_ms: driven.resumed_after_ms,
                }),
            }
        }
    };
    let Driven { summary, journal, recorder, cpu_ms: coordinator_cpu_ms, service } = driven;
    let wall_s = started.elapsed().as_secs_f64();
    let requests = fleet.requests_served().saturating_sub(requests_before);
    let timings: Vec<NodeTiming> = fleet
        .nodes
        .iter()
        .map(|node| NodeTiming {
            control_plane: node.role == NodeRole::ControlPlane,
            planned_ms: node.machine.planned_delay_ms() as f64,
            measured_ms: recorder
                .durations
                .get(node.name.as_str())
                .copied()
                .filter(|_| node.machine.plan().fault.is_none()),
        })
        .collect();
    let ideal_wall_s = efficiency::ideal_wall_s(&timings, limit, bare_protocol_s);
    for task in crash_watchers.into_iter().chain(outages) {
        task.abort();
    }

    let finals = final_nodes(&fleet, &journal, &config.to).await;
    let peak_unavailable = fleet.unavailability.peak();
    let mut violations = check_run(&finals, &summary.counters, &config.to, limit, peak_unavailable);
    let (control_plane_violations, control_plane) =
        check_control_plane(&control_plane_nodes(&fleet, &journal), &fleet.control_plane.events(), &config.to);
    violations.extend(control_plane_violations);
    fleet.shutdown().await;
    let finals: Vec<FinalNode> = finals;

    let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
    for error in &summary.errors {
        *groups.entry((error.step.clone().unwrap_or_else(|| "-".into()), error.code.clone())).or_default() += 1;
    }
    let (_, rss_peak_bytes) = rss();
    Ok(Report {
        driver: match config.driver {
            Driver::Cli => "cli",
            Driver::Service => "service",
        },
        service,
        seed: config.seed,
        nodes: total,
        counters: summary.counters,
        wall_s,
        nodes_per_s: total as f64 / wall_s.max(f64::EPSILON),
        duration_ms: Percentiles::of(recorder.durations.into_values().collect()),
        max_unavailable: limit,
        peak_unavailable,
        errors: groups.into_iter().map(|((step, code), count)| ErrorGroup { step, code, count }).collect(),
        rss_peak_bytes,
        rss_per_node_bytes,
        calibration: Calibration {
            bare_protocol_s,
            overhead_ratio: if bare_protocol_s > 0.0 { wall_s / bare_protocol_s } else { 0.0 },
        },
        requests_per_node: requests as f64 / total.max(1) as f64,
        coordinator_cpu_ms_per_node: coordinator_cpu_ms / total.max(1) as f64,
        ideal_wall_s,
        efficiency: efficiency::efficiency(ideal_wall_s, wall_s),
        stretch: efficiency::stretch(&timings),
        checks: ChecksReport { passed: violations.is_empty(), violations },
        control_plane,
        faults: plan.counts().into_iter().map(|(kind, count)| (kind.to_string(), count)).collect(),
        timeline: recorder.timeline,
        outcomes: finals
            .iter()
            .zip(&journal.nodes)
            .map(|(node, record)| {
                let outcome = match (&record.status, &record.error) {
                    (_, Some(error)) => format!("error {} {}", error.step.as_deref().unwrap_or("-"), error.code),
                    (status, None) => format!("{status:?}").to_lowercase(),
                };
                (node.name.clone(), outcome)
            })
            .collect(),
    })
}

/// What driving the rollout left: the coordinator's counters and errors, its
/// journal, the recorder, and the coordinator's CPU time.
struct Driven {
    summary: Summary,
    journal: Journal,
    recorder: Recorder,
    cpu_ms: f64,
    service: Option<ServiceFigures>,
}

/// Drives the rollout with the one-shot engine, on a journal file in a temporary directory.
async fn drive_cli(
    fleet: &Fleet,
    config: &RunConfig,
    client: AgentClient,
    limit: usize,
    recorder: Recorder,
) -> Result<Driven, RunError> {
    let mut spec = RolloutSpec {
        id: None,
        target: config.to.clone(),
        artifacts: vec![target_artifact(&config.to).0],
        artifacts_by_arch: Default::default(),
        node_arch: Default::default(),
        max_unavailable: Limit::Count(limit + config.limit_overshoot),
        max_failures: config.max_failures,
        per_zone: config.per_zone,
        soak: Duration::ZERO,
        prestage: config.prestage,
        images: release_images(config),
    };
    if config.limit_overshoot == 0 {
        spec.max_unavailable = config.max_unavailable;
    }
    let journal_dir = tempfile::tempdir().map_err(|e| RunError::Coordinator(e.to_string()))?;
    let storage = RolloutStorage::file(&journal_dir.path().join("rollout.redb"))
        .map_err(|e| RunError::Coordinator(e.to_string()))?;
    let journals = storage.journal.clone();
    let driver = DriverSettings {
        concurrency: config.concurrency,
        poll_interval: config.poll_interval,
        node_timeout: Duration::from_secs(300),
        ..DriverSettings::default()
    };
    let mut rollout = Rollout::new(client, &fleet.inventory, spec, storage, driver)
        .await
        .map_err(|e| RunError::Coordinator(e.to_string()))?;

    let measured = coordinator_cpu::run_measured(async move {
        let mut recorder = recorder;
        let summary = rollout.run(&mut recorder).await;
        (summary, recorder)
    });
    let ((summary, recorder), cpu_ms) = measured.await.map_err(|e| RunError::Coordinator(e.to_string()))?;
    let summary = summary.map_err(|e| RunError::Coordinator(e.to_string()))?;
    let journal = journals.load().await.map_err(|e| RunError::Coordinator(e.to_string()))?;
    drop(journal_dir);
    Ok(Driven { summary, journal, recorder, cpu_ms, service: None })
}

/// The static-pod images the coordinator is given: the release's, unless
/// withheld or the fleet has no control-plane node to run them.
pub fn release_images(config: &RunConfig) -> Vec<upkeep_common::api::ImageArtifact> {
    match config.withhold_images || config.control_planes.min(config.nodes) == 0 {
        true => Vec::new(),
        false => crate::static_pods::release_images(&config.to),
    }
}

/// One mTLS handshake and a few small requests per node, across the fleet, with
/// the rollout's concurrency and no engine work: the floor the rollout compares to.
async fn calibrate(fleet: &Fleet, client: AgentClient, concurrency: usize) -> f64 {
    let started = Instant::now();
    let addresses: Vec<String> = fleet.inventory.nodes.iter().map(|n| n.address.clone()).collect();
    stream::iter(addresses)
        .map(|address| {
            let client = client.clone();
            async move {
                for _ in 0..CALIBRATION_REQUESTS {
                    let _ = client.healthz(&address).await;
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    started.elapsed().as_secs_f64()
}

/// Each control-plane node as the control plane's checks see it: the journal's
/// status beside its machine's static pods and manifest directory.
fn control_plane_nodes(fleet: &Fleet, journal: &Journal) -> Vec<ControlPlaneNode> {
    fleet
        .nodes
        .iter()
        .zip(&journal.nodes)
        .filter(|(node, _)| node.role == NodeRole::ControlPlane)
        .map(|(node, record)| ControlPlaneNode {
            name: node.name.to_string(),
            status: record.status,
            static_pod_fault: node.machine.plan().fault.is_some_and(FaultKind::control_plane_only),
            initial: node.initial.clone(),
            pods: node.machine.static_pods(),
            manifests: node.machine.manifests(),
            manifest_writes: node.machine.manifest_writes(),
            restores: node.machine.manifest_restores(),
        })
        .collect()
}

/// Each node as the checks see it: the journal's status beside what the agent
/// and the machine say. Dry runs, prestaging that staged (stage-only
/// operations that succeeded) and a control-plane node's static pods that
/// were upgraded (its kubelet is still to come) are not upgrades of the node;
/// prestaging or static pods that failed are a failed upgrade, as the
/// coordinator counts it.
async fn final_nodes(fleet: &Fleet, journal: &Journal, target: &Version) -> Vec<FinalNode> {
    let mut finals = Vec::with_capacity(fleet.nodes.len());
    for (node, record) in fleet.nodes.iter().zip(&journal.nodes) {
        let upgrades = node.app().map(|app| {
            app.engine
                .operations()
                .iter()
                .filter(|op| {
                    let record = app.engine.record(&op.id);
                    let stage_only = record.as_ref().is_some_and(|record| record.stage_only);
                    let static_pods_only = record.as_ref().is_some_and(|record| {
                        !record.plan.is_empty() && record.plan.iter().all(|plan| plan.static_pod.is_some())
                    });
                    op.kind == OperationKind::Upgrade
                        && !op.dry_run
                        && !((stage_only || static_pods_only) && op.phase == OperationPhase::Succeeded)
                        && op.target_version.as_ref() == Some(target)
                })
                .map(|op| op.phase)
                .collect()
        });
        let (observed, phase) = match node.app() {
            Some(app) => {
                app.refresh().await;
                let (state, _) = app.node.snapshot();
                let observed = state
                    .components
                    .iter()
                    .find(|c| c.name.as_str() == "kubelet")
                    .and_then(|c| c.observed_version.clone());
                (observed, state.phase)
            }
            None => (None, NodePhase::Idle),
        };
        finals.push(FinalNode {
            name: node.name.to_string(),
            status: record.status,
            cordoned: node.machine.cordoned(),
            installed: node.machine.installed(),
            initial: node.initial.clone(),
            observed,
            phase,
            swaps: node.machine.swaps(),
            upgrades,
        });
    }
    finals
}
