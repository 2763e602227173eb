//! PostCheck: every component reports its target version and answers its health
//! URL (a static pod's container runs its manifest's image, Ready) and, with `[kubernetes]`, the Node reports the new kubelet with a Ready
//! heartbeat newer than the restart. Also used after a rollback's restore.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use upkeep_common::api::StepName;
use upkeep_common::{ErrorCode, Version};

use super::{StepDone, StepFailure, StepResult};
use crate::engine::Engine;
use crate::engine::record::{ComponentPlan, OperationRecord};
use crate::host::kubernetes::NodeObservation;

/// How often PostCheck asks again while waiting for the new version.
const POSTCHECK_POLL: Duration = Duration::from_millis(200);

/// Waits until every component reports its target version and answers its
/// health URL and, with `[kubernetes]` and a component the Node reports in the
/// plan (`node_reports_version`), until the Node reports the new kubelet (see [`node_reports`]), all within the PostCheck timeout.
pub(super) async fn postcheck(engine: &Engine, record: &mut OperationRecord) -> StepResult {
    let within = engine.config.timeouts.postcheck;
    let deadline = crate::deadline::after(tokio::time::Instant::now(), within);
    let targets: Vec<_> = record.plan.iter().map(|plan| (plan.name.clone(), plan.to_version.clone())).collect();
    verify_versions(engine, &targets, within).await?;
    let reported_by_node =
        |plan: &&ComponentPlan| engine.config.components.iter().any(|c| c.name == plan.name && c.node_reports_version);
    let kubelet = record.plan.iter().find(reported_by_node);
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
        if let Some(settings) = component.static_pod() {
            if let Err(failure) = super::static_pods::running_now(engine, component, settings, target).await {
                return Some(failure);
            }
            continue;
        }
        if let Some(url) = &component.health_url
            && let Err(reason) = engine.host.health.check(url, None, engine.config.probe.version_timeout).await
        {
            return Some(StepFailure::new(ErrorCode::Conflict, "health_check_failed", format!("{name}: {reason}")));
        }
    }
    None
}
