//! Each step's work against the host. Every step is idempotent: run again after
//! a kill, it finds what it already did and finishes the rest.

mod postcheck;
mod stage;
mod static_pods;

use std::time::Duration;

use upkeep_common::ErrorCode;
use upkeep_common::api::{DrainTimeoutAction, OperationKind, StepName, StepStatus};

pub use postcheck::{node_reports, verify_versions};
pub use static_pods::health as static_pod_health;

use crate::engine::Engine;
use crate::engine::crash::crash_point;
use crate::engine::record::OperationRecord;
use crate::host::kubernetes::{CordonOutcome, DrainOutcome, DrainSettings, KubeError};
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

/// Runs one step of `record`.
pub async fn execute(engine: &Engine, record: &mut OperationRecord, step: StepName) -> StepResult {
    match step {
        StepName::PreCheck => precheck(engine, record).await,
        StepName::Stage => stage::stage(engine, record).await,
        StepName::Cordon => cordon(engine, record).await,
        StepName::Drain => drain(engine, record).await,
        StepName::Swap => swap(engine, record).await,
        StepName::Restart => restart(engine, record).await,
        StepName::PostCheck => postcheck::postcheck(engine, record).await,
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
        let dir = plan.work_dir();
        let free = engine.host.files.free_bytes(&dir).await;
        let needed = binary_size(&plan.path).await.saturating_add(16 * 1024 * 1024);
        match free {
            Some(free) if free < needed => {
                return Err(StepFailure::new(
                    ErrorCode::DependencyUnavailable,
                    "insufficient_disk",
                    format!("{}: {free} bytes free in {}, {needed} needed", plan.name, dir.display()),
                ));
            }
            Some(free) => notes.push(format!("{}: {} MiB free", plan.name, free / (1024 * 1024))),
            None => notes.push(format!("{}: free space unknown", plan.name)),
        }
        let reachable = match record.operation.kind {
            _ if plan.static_pod.is_some() && record.operation.kind != OperationKind::Rollback => {
                static_pods::manifest_editable(engine, plan).await
            }
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
                engine
                    .host
                    .files
                    .reachable(&plan.source, within)
                    .await
                    .map_err(source_failure(plan.name.as_str(), "artifact_unreachable"))
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

fn kube_failure(detail: &'static str) -> impl Fn(KubeError) -> StepFailure {
    move |error| match error {
        KubeError::Unavailable(_) => StepFailure::new(ErrorCode::DependencyUnavailable, detail, error.to_string()),
        KubeError::DrainBlocked(_) => StepFailure::new(ErrorCode::Conflict, "drain_blocked", error.to_string()),
        KubeError::Refused(_) | KubeError::TooManyRequests | KubeError::NotFound => {
            StepFailure::new(ErrorCode::Conflict, detail, error.to_string())
        }
    }
}

/// Whether the operation changes static pods only: their pods restart in
/// place, the node keeps its workloads, so it is neither cordoned nor drained.
fn static_pods_only(record: &OperationRecord) -> bool {
    matches!(record.operation.kind, OperationKind::Upgrade | OperationKind::Rollback)
        && !record.plan.is_empty()
        && record.plan.iter().all(|plan| plan.static_pod.is_some())
}

const KEEPS_WORKLOADS: &str = "static pods only: kubelet restarts them in place and the node keeps its workloads";

async fn cordon(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    if static_pods_only(record) {
        return Ok(StepDone::skipped(KEEPS_WORKLOADS));
    }
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
    if static_pods_only(record) {
        return Ok(StepDone::skipped(KEEPS_WORKLOADS));
    }
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

/// Puts each new file in place (a backup kept first), in plan order. A static
/// pod's new container must run before the next component is touched.
async fn swap(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let files = &engine.host.files;
    let mut swapped = Vec::new();
    for plan in &record.plan {
        let current = files.digest(&plan.path).await.map_err(io_failure("swap_failed"))?;
        if current.is_some() && current == plan.sha256 {
            swapped.push(format!("{}: in place", plan.name));
        } else {
            if current.is_some() {
                files.backup(&plan.path, &plan.backup).await.map_err(io_failure("swap_failed"))?;
            }
            crash_point(&format!("swap:backup:{}", plan.name));
            let installed = match record.operation.kind {
                OperationKind::Rollback => files.restore(&plan.staged, &plan.path).await,
                _ => files.rename(&plan.staged, &plan.path).await,
            };
            installed.map_err(io_failure("swap_failed"))?;
            crash_point(&format!("swap:rename:{}", plan.name));
            swapped.push(format!("{}: swapped", plan.name));
        }
        if plan.static_pod.is_some() {
            swapped.push(static_pods::wait_until_running(engine, plan, &plan.to_version).await?);
        }
    }
    Ok(StepDone::success(swapped.join("; ")))
}

async fn restart(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let mut messages = Vec::new();
    for plan in &record.plan {
        if plan.static_pod.is_some() {
            messages.push(format!("{}: kubelet restarts the static pod when its manifest changes", plan.name));
            continue;
        }
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

/// A failure to read an artifact's source for `component`: a source outside the
/// file roots is `source_not_allowed`, one past the size limit
/// `artifact_too_large`, anything else `otherwise` (a dependency that failed).
pub(super) fn source_failure<'a>(
    component: &'a str,
    otherwise: &'static str,
) -> impl Fn(crate::host::files::FileError) -> StepFailure + 'a {
    move |error| match error {
        crate::host::files::FileError::Refused { .. } => {
            StepFailure::new(ErrorCode::ValidationFailed, "source_not_allowed", format!("{component}: {error}"))
        }
        crate::host::files::FileError::TooLarge { .. } => {
            StepFailure::new(ErrorCode::ValidationFailed, "artifact_too_large", format!("{component}: {error}"))
        }
        other => StepFailure::new(ErrorCode::DependencyUnavailable, otherwise, format!("{component}: {other}")),
    }
}

pub(super) fn io_failure(detail: &'static str) -> impl Fn(crate::host::files::FileError) -> StepFailure {
    move |error| StepFailure::new(ErrorCode::DependencyUnavailable, detail, error.to_string())
}
