//! Each step's work against the host. Every step is idempotent: run again after
//! a kill, it finds what it already did and finishes the rest.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use upkeep_common::api::{DrainTimeoutAction, OperationKind, StepName, StepStatus};
use upkeep_common::{ErrorCode, Version};

use crate::engine::Engine;
use crate::engine::admission::decode_signature;
use crate::engine::crash::crash_point;
use crate::engine::record::OperationRecord;
use crate::host::kubernetes::{CordonOutcome, DrainOutcome, DrainSettings, KubeError, NodeObservation};
use crate::host::services::{RestartError, RestartOutcome};

/// A step that finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// Success or Skipped.
    pub status: StepStatus,
    /// What happened.
    pub message: String,
}

impl StepDone {
    fn success(message: impl Into<String>) -> Self {
        Self { status: StepStatus::Success, message: message.into() }
    }

    fn skipped(message: impl Into<String>) -> Self {
        Self { status: StepStatus::Skipped, message: message.into() }
    }
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The broad error code.
    pub code: ErrorCode,
    /// A precise snake_case code, such as `checksum_mismatch`.
    pub detail: &'static str,
    /// What went wrong.
    pub message: String,
}

impl StepFailure {
    /// A failure with its codes.
    pub fn new(code: ErrorCode, detail: &'static str, message: impl Into<String>) -> Self {
        Self { code, detail, message: message.into() }
    }
}

/// The result of one step.
pub type StepResult = Result<StepDone, StepFailure>;

/// The longest PreCheck waits for one artifact source to answer.
const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often PostCheck asks again while waiting for the new version.
const POSTCHECK_POLL: Duration = Duration::from_millis(200);

/// Runs one step of `record`.
pub async fn execute(engine: &Engine, record: &mut OperationRecord, step: StepName) -> StepResult {
    match step {
        StepName::PreCheck => precheck(engine, record).await,
        StepName::Stage => stage(engine, record).await,
        StepName::Cordon => cordon(engine, record).await,
        StepName::Drain => drain(engine, record).await,
        StepName::Swap => swap(engine, record).await,
        StepName::Restart => restart(engine, record).await,
        StepName::PostCheck => postcheck(engine, record).await,
        StepName::Uncordon => uncordon(engine, record).await,
    }
}

async fn precheck(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let mut notes = Vec::new();
    if let Some(degraded) = engine.node_record().degraded {
        if !record.force {
            return Err(StepFailure::new(
                ErrorCode::Conflict,
                "node_degraded",
                format!("node is Degraded: {}", degraded.message),
            ));
        }
        notes.push("node Degraded, forced".to_owned());
    }
    for plan in &record.plan {
        let dir = crate::host::files::work_dir(&plan.binary);
        let free = engine.host.files.free_bytes(&dir).await;
        let needed = binary_size(&plan.binary).await.saturating_add(16 * 1024 * 1024);
        match free {
            Some(free) if free < needed => {
                return Err(StepFailure::new(
                    ErrorCode::DependencyUnavailable,
                    "insufficient_disk",
                    format!("{}: {free} bytes free beside {}, {needed} needed", plan.name, plan.binary.display()),
                ));
            }
            Some(free) => notes.push(format!("{}: {} MiB free", plan.name, free / (1024 * 1024))),
            None => notes.push(format!("{}: free space unknown", plan.name)),
        }
        let reachable = match record.operation.kind {
            OperationKind::Rollback => match engine.host.files.exists(&plan.staged).await {
                true => Ok(()),
                false => Err(StepFailure::new(
                    ErrorCode::DependencyUnavailable,
                    "artifact_unreachable",
                    format!("{}: {} is missing", plan.name, plan.staged.display()),
                )),
            },
            _ => {
                let within = engine.config.timeouts.precheck.min(REACHABILITY_TIMEOUT);
                engine.host.files.reachable(&plan.source, within).await.map_err(|error| match error {
                    crate::host::files::FileError::Refused { .. } => StepFailure::new(
                        ErrorCode::ValidationFailed,
                        "source_not_allowed",
                        format!("{}: {error}", plan.name),
                    ),
                    other => StepFailure::new(
                        ErrorCode::DependencyUnavailable,
                        "artifact_unreachable",
                        format!("{}: {other}", plan.name),
                    ),
                })
            }
        };
        reachable?;
    }
    let earlier = record
        .operation
        .steps
        .iter()
        .find(|s| s.name == StepName::PreCheck)
        .map(|s| s.message.clone())
        .unwrap_or_default();
    let summary = format!(
        "{} component(s) to change; {}",
        record.plan.len(),
        notes.into_iter().chain((!earlier.is_empty()).then_some(earlier)).collect::<Vec<_>>().join("; ")
    );
    Ok(StepDone::success(summary))
}

async fn binary_size(path: &std::path::Path) -> u64 {
    tokio::fs::metadata(path).await.map(|m| m.len()).unwrap_or(0)
}

async fn stage(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let keys = &engine.config.artifacts.trusted_keys;
    // `verified` means a trusted signature was checked for every artifact, not only its sha256.
    let mut signatures_checked = !record.plan.is_empty();
    let mut messages = Vec::new();
    for plan in record.plan.clone() {
        let expected = plan.sha256.clone();
        let present = engine.host.files.digest(&plan.staged).await.map_err(io_failure("stage_failed"))?;
        let digest = if present.is_some() && present == expected {
            messages.push(format!("{}: already staged", plan.name));
            present
        } else if record.operation.kind == OperationKind::Rollback {
            return Err(StepFailure::new(
                ErrorCode::Conflict,
                "checksum_mismatch",
                format!("{}: the kept binary {} is missing or changed", plan.name, plan.staged.display()),
            ));
        } else {
            let staged =
                engine.host.files.stage(&plan.source, &plan.staged, engine.config.artifacts.max_bytes).await.map_err(
                    |error| match error {
                        crate::host::files::FileError::Refused { .. } => StepFailure::new(
                            ErrorCode::ValidationFailed,
                            "source_not_allowed",
                            format!("{}: {error}", plan.name),
                        ),
                        crate::host::files::FileError::TooLarge { .. } => StepFailure::new(
                            ErrorCode::ValidationFailed,
                            "artifact_too_large",
                            format!("{}: {error}", plan.name),
                        ),
                        other => StepFailure::new(
                            ErrorCode::DependencyUnavailable,
                            "fetch_failed",
                            format!("{}: {other}", plan.name),
                        ),
                    },
                )?;
            messages.push(format!("{}: staged {} bytes", plan.name, staged.size));
            Some(staged.sha256)
        };
        if digest != expected {
            let _ = engine.host.files.remove(&plan.staged).await;
            return Err(StepFailure::new(
                ErrorCode::ValidationFailed,
                "checksum_mismatch",
                format!(
                    "{}: sha256 is {}, expected {}",
                    plan.name,
                    digest.map(|d| d.to_string()).unwrap_or_default(),
                    expected.map(|d| d.to_string()).unwrap_or_default()
                ),
            ));
        }
        match (&plan.signature, &digest) {
            (Some(_), Some(_)) if keys.is_empty() => {
                messages.push(format!("{}: signature not checked (no trusted keys configured)", plan.name));
                signatures_checked = false;
            }
            (Some(signature), Some(digest)) if !signature_valid(keys, signature, &digest.to_bytes()) => {
                let _ = engine.host.files.remove(&plan.staged).await;
                return Err(StepFailure::new(
                    ErrorCode::ValidationFailed,
                    "signature_invalid",
                    format!("{}: the signature does not verify with any trusted key", plan.name),
                ));
            }
            (Some(_), Some(_)) => messages.push(format!("{}: signature verified", plan.name)),
            _ => signatures_checked = false,
        }
        crash_point(&format!("stage:{}", plan.name));
    }
    record.verified = record.operation.kind != OperationKind::Rollback && signatures_checked;
    Ok(StepDone::success(messages.join("; ")))
}

fn signature_valid(keys: &[[u8; 32]], signature: &str, digest: &[u8; 32]) -> bool {
    let Some(bytes) = decode_signature(signature) else { return false };
    let signature = Signature::from_bytes(&bytes);
    keys.iter()
        .filter_map(|key| VerifyingKey::from_bytes(key).ok())
        .any(|key| key.verify_strict(digest, &signature).is_ok())
}

fn kube_failure(detail: &'static str) -> impl Fn(KubeError) -> StepFailure {
    move |error| match error {
        KubeError::Unavailable(_) => StepFailure::new(ErrorCode::DependencyUnavailable, detail, error.to_string()),
        KubeError::DrainBlocked(_) => StepFailure::new(ErrorCode::Conflict, "drain_blocked", error.to_string()),
        KubeError::Refused(_) | KubeError::TooManyRequests | KubeError::NotFound => {
            StepFailure::new(ErrorCode::Conflict, detail, error.to_string())
        }
    }
}

async fn cordon(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let outcome = engine.host.kubernetes.cordon(&record.operation.id).await.map_err(kube_failure("cordon_failed"))?;
    crate::refresh::observe_node(&engine.host, &engine.node).await;
    match outcome {
        CordonOutcome::Cordoned => {
            record.cordoned_by_us = true;
            Ok(StepDone::success("cordoned"))
        }
        CordonOutcome::AlreadyCordoned if record.cordoned_by_us => Ok(StepDone::success("cordoned")),
        CordonOutcome::AlreadyCordoned => {
            record.was_cordoned = true;
            Ok(StepDone::success("already cordoned by someone else; it stays cordoned afterwards"))
        }
        CordonOutcome::NotConfigured => Ok(StepDone::skipped("no Kubernetes access configured")),
    }
}

async fn drain(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let options = record.drain.clone().unwrap_or_default();
    let force_at_timeout = options.on_timeout == Some(DrainTimeoutAction::Force);
    let defaults = engine.config.kubernetes.as_ref();
    let settings = DrainSettings {
        timeout: options.timeout_seconds.map(Duration::from_secs).unwrap_or(engine.config.timeouts.drain),
        grace_period: options
            .grace_period_seconds
            .map(Duration::from_secs)
            .or_else(|| defaults.and_then(|d| d.drain_grace_period)),
        allow_local_storage: options
            .allow_local_storage
            .unwrap_or_else(|| defaults.is_some_and(|d| d.drain_allow_local_storage)),
        skip_pod_selector: options
            .skip_pod_selector
            .clone()
            .or_else(|| defaults.and_then(|d| d.drain_skip_pod_selector.clone())),
        force_at_timeout,
    };
    match engine.host.kubernetes.drain(&settings).await.map_err(kube_failure("drain_failed"))? {
        DrainOutcome::Drained { evicted, retries, forced } => {
            let mut message = format!("{evicted} pod(s) evicted");
            if retries > 0 {
                message.push_str(&format!("; {retries} eviction(s) refused by disruption budgets and retried"));
            }
            if !forced.is_empty() {
                message.push_str(&format!("; deleted at the timeout (forced): {}", forced.join("; ")));
                record.operation.accepted_risks.push(upkeep_common::api::AcceptedRisk {
                    code: "drain_forced".to_owned(),
                    message: format!("pods deleted at the drain timeout: {}", forced.join("; ")),
                });
            }
            Ok(StepDone::success(message))
        }
        DrainOutcome::NotConfigured => Ok(StepDone::skipped("no Kubernetes access configured")),
    }
}

async fn swap(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let files = &engine.host.files;
    let mut swapped = Vec::new();
    for plan in &record.plan {
        let current = files.digest(&plan.binary).await.map_err(io_failure("swap_failed"))?;
        if current.is_some() && current == plan.sha256 {
            swapped.push(format!("{}: in place", plan.name));
            continue;
        }
        if current.is_some() {
            files.backup(&plan.binary, &plan.backup).await.map_err(io_failure("swap_failed"))?;
        }
        crash_point(&format!("swap:backup:{}", plan.name));
        let installed = match record.operation.kind {
            OperationKind::Rollback => files.restore(&plan.staged, &plan.binary).await,
            _ => files.rename(&plan.staged, &plan.binary).await,
        };
        installed.map_err(io_failure("swap_failed"))?;
        crash_point(&format!("swap:rename:{}", plan.name));
        swapped.push(format!("{}: swapped", plan.name));
    }
    Ok(StepDone::success(swapped.join("; ")))
}

async fn restart(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let mut messages = Vec::new();
    for plan in &record.plan {
        let Some(component) = engine.config.components.iter().find(|c| c.name == plan.name) else { continue };
        let outcome =
            engine.host.services.restart(component, engine.config.timeouts.restart).await.map_err(|error| {
                // The restart is bounded by the step's own timeout, so running out
                // of it has the code of any step that does, whichever timer fired first.
                let code = if matches!(error, RestartError::Timeout(_)) { "step_timeout" } else { "restart_failed" };
                StepFailure::new(ErrorCode::DependencyUnavailable, code, format!("{}: {error}", plan.name))
            })?;
        messages.push(match outcome {
            RestartOutcome::Restarted => format!("{}: restarted", plan.name),
            RestartOutcome::NothingToRestart => format!("{}: nothing to restart", plan.name),
        });
    }
    Ok(StepDone::success(messages.join("; ")))
}

/// Waits until every component reports its target version and answers its
/// health URL and, with `[kubernetes]` and a kubelet in the plan, until the Node
/// reports the new kubelet (see [`node_reports`]), all within the PostCheck timeout.
async fn postcheck(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let within = engine.config.timeouts.postcheck;
    let deadline = tokio::time::Instant::now() + within;
    let targets: Vec<_> = record.plan.iter().map(|plan| (plan.name.clone(), plan.to_version.clone())).collect();
    verify_versions(engine, &targets, within).await?;
    let kubelet = record.plan.iter().find(|plan| plan.name.as_str() == NODE_REPORTED_COMPONENT);
    let mut message = "every component reports its target version and is healthy".to_owned();
    if let Some(kubelet) = kubelet.filter(|_| engine.host.kubernetes.configured()) {
        let restarted = restart_started(record);
        wait_for_node(engine, &kubelet.to_version, restarted, deadline).await?;
        message.push_str("; the Node reports the new kubelet with a fresh Ready heartbeat");
        crate::refresh::observe_node(&engine.host, &engine.node).await;
    }
    engine.refresh_versions().await;
    Ok(StepDone::success(message))
}

/// The component whose version the Node reports (`status.nodeInfo.kubeletVersion`).
const NODE_REPORTED_COMPONENT: &str = "kubelet";

/// When the Restart step started (or now, when it never ran), to whole seconds
/// as the API server keeps heartbeat times.
fn restart_started(record: &OperationRecord) -> DateTime<Utc> {
    let started = record
        .operation
        .steps
        .iter()
        .find(|step| step.name == StepName::Restart)
        .and_then(|step| step.started_at)
        .unwrap_or_else(Utc::now);
    started.trunc_subsecs(0)
}

/// Whether the Node reports the kubelet at `target`, Ready, with a heartbeat
/// no older than `restarted` (Ready alone stays True for a while after a
/// kubelet stops, so only a heartbeat since the restart proves the new one
/// runs); why not, when it does not.
pub fn node_reports(observed: &NodeObservation, target: &Version, restarted: DateTime<Utc>) -> Result<(), String> {
    let reported = observed.kubelet_version.as_deref().and_then(|v| v.parse::<Version>().ok());
    if reported.as_ref() != Some(target) {
        let shown = observed.kubelet_version.as_deref().unwrap_or("no version");
        return Err(format!("the Node reports kubelet {shown}, expected {target}"));
    }
    let Some(ready) = observed.ready.as_ref().filter(|ready| ready.is_true()) else {
        return Err("the Node is not Ready".to_owned());
    };
    match ready.last_heartbeat {
        Some(heartbeat) if heartbeat >= restarted => Ok(()),
        Some(heartbeat) => Err(format!(
            "the Node's last Ready heartbeat ({}) is older than the restart ({})",
            heartbeat.to_rfc3339(),
            restarted.to_rfc3339()
        )),
        None => Err("the Node's Ready condition has no heartbeat".to_owned()),
    }
}

/// Polls the Node until [`node_reports`] holds or `deadline` passes.
async fn wait_for_node(
    engine: &Engine,
    target: &Version,
    restarted: DateTime<Utc>,
    deadline: tokio::time::Instant,
) -> Result<(), StepFailure> {
    loop {
        let problem = match engine.host.kubernetes.observe().await {
            Ok(Some(observed)) => node_reports(&observed, target, restarted).err(),
            Ok(None) => None,
            Err(error) => Some(error.to_string()),
        };
        let Some(problem) = problem else { return Ok(()) };
        if tokio::time::Instant::now() + POSTCHECK_POLL > deadline {
            return Err(StepFailure::new(ErrorCode::Conflict, "node_not_updated", problem));
        }
        tokio::time::sleep(POSTCHECK_POLL).await;
    }
}

/// Polls version commands and health URLs until all match or `within` passes.
pub async fn verify_versions(
    engine: &Engine,
    targets: &[(upkeep_common::ids::ComponentName, upkeep_common::Version)],
    within: Duration,
) -> Result<(), StepFailure> {
    let deadline = crate::deadline::after(tokio::time::Instant::now(), within);
    loop {
        let problem = first_problem(engine, targets).await;
        let Some(problem) = problem else { return Ok(()) };
        if crate::deadline::after(tokio::time::Instant::now(), POSTCHECK_POLL) > deadline {
            return Err(problem);
        }
        tokio::time::sleep(POSTCHECK_POLL).await;
    }
}

async fn first_problem(
    engine: &Engine,
    targets: &[(upkeep_common::ids::ComponentName, upkeep_common::Version)],
) -> Option<StepFailure> {
    for (name, target) in targets {
        let Some(component) = engine.config.components.iter().find(|c| &c.name == name) else { continue };
        match engine.host.versions.probe(component, engine.config.probe.version_timeout).await {
            Ok(version) if &version == target => {}
            Ok(version) => {
                return Some(StepFailure::new(
                    ErrorCode::Conflict,
                    "version_mismatch",
                    format!("{name} reports {version}, expected {target}"),
                ));
            }
            Err(error) => {
                return Some(StepFailure::new(ErrorCode::Conflict, "version_mismatch", format!("{name}: {error}")));
            }
        }
        if let Some(url) = &component.health_url {
            if let Err(reason) = engine.host.health.check(url, engine.config.probe.version_timeout).await {
                return Some(StepFailure::new(ErrorCode::Conflict, "health_check_failed", format!("{name}: {reason}")));
            }
        }
    }
    None
}

async fn uncordon(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    if !engine.host.kubernetes.configured() {
        return Ok(StepDone::skipped("no Kubernetes access configured"));
    }
    if record.was_cordoned && !record.cordoned_by_us {
        return Ok(StepDone::skipped("the node was cordoned before upkeep; it stays cordoned"));
    }
    if !record.cordoned_by_us && record.operation.kind != OperationKind::Uncordon {
        return Ok(StepDone::skipped("upkeep did not cordon the node"));
    }
    let only_if_ours = record.operation.kind != OperationKind::Uncordon;
    engine
        .host
        .kubernetes
        .uncordon(&record.operation.id, only_if_ours)
        .await
        .map_err(kube_failure("uncordon_failed"))?;
    crate::refresh::observe_node(&engine.host, &engine.node).await;
    record.cordoned_by_us = false;
    Ok(StepDone::success("uncordoned"))
}

fn io_failure(detail: &'static str) -> impl Fn(crate::host::files::FileError) -> StepFailure {
    move |error| StepFailure::new(ErrorCode::DependencyUnavailable, detail, error.to_string())
}
