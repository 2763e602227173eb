//! A static pod's parts of the steps: Stage pulls its image and writes the new
//! manifest outside the manifest directory; after its manifest is swapped,
//! Swap waits until kubelet runs the new container, Ready and no longer
//! restarting, before the next static pod is touched; PostCheck and a
//! rollback's verification check the container again.

use std::time::Duration;

use upkeep_common::api::StaticPodHealth;
use upkeep_common::image::version_of_image;
use upkeep_common::{ErrorCode, Version};

use super::StepFailure;
use crate::config::{ComponentConfig, StaticPodSettings};
use crate::engine::Engine;
use crate::engine::record::ComponentPlan;
use crate::host::files::digest_of;
use crate::static_pod::manifest::{self, ManifestEdit};
use crate::static_pod::{MAX_MANIFEST_BYTES, Settling, running_problem};

/// The first wait before the running container is looked at again; each wait
/// doubles up to [`POLL`], so a quick kubelet is seen quickly and a slow one
/// is not asked too often.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest wait between two looks at the running container.
const POLL: Duration = Duration::from_millis(200);

/// The mode of a written manifest (kubeadm writes them readable by root only).
const MANIFEST_MODE: u32 = 0o600;

/// Pulls the plan's image and writes the new manifest to its staged path;
/// returns the staged manifest's digest and what was done.
pub(super) async fn stage(
    engine: &Engine,
    plan: &ComponentPlan,
) -> Result<(upkeep_common::ids::Sha256, String), StepFailure> {
    let (component, settings) = settings_of(engine, plan)?;
    let Some(pod_plan) = &plan.static_pod else { return Err(not_a_static_pod(plan)) };
    engine
        .host
        .images
        .pull(&settings.pull_command, &pod_plan.image, engine.config.timeouts.stage)
        .await
        .map_err(|reason| failure(ErrorCode::DependencyUnavailable, "image_pull_failed", plan, reason))?;
    let text = read_manifest(engine, component).await?;
    let edit =
        ManifestEdit { container: &pod_plan.container, image: &pod_plan.image, remove_flags: &pod_plan.remove_flags };
    let new = manifest::rewrite(&text, &edit)
        .map_err(|error| failure(ErrorCode::ValidationFailed, "manifest_invalid", plan, error.to_string()))?;
    engine
        .host
        .files
        .write(&plan.staged, new.as_bytes(), MANIFEST_MODE)
        .await
        .map_err(|error| failure(ErrorCode::DependencyUnavailable, "stage_failed", plan, error.to_string()))?;
    let removed = pod_plan.remove_flags.len();
    Ok((
        digest_of(new.as_bytes()),
        format!("{}: image pulled, manifest staged ({removed} flag(s) to remove)", plan.name),
    ))
}

/// After the swap of `plan`'s manifest: waits until kubelet runs the manifest's
/// image Ready for the settle time, and its health and version URLs agree,
/// within the PostCheck timeout.
pub(super) async fn wait_until_running(
    engine: &Engine,
    plan: &ComponentPlan,
    target: &Version,
) -> Result<String, StepFailure> {
    let (component, settings) = settings_of(engine, plan)?;
    let within = engine.config.timeouts.postcheck;
    let deadline = crate::deadline::after(tokio::time::Instant::now(), within);
    let mut settling = Settling::default();
    let mut pause = FIRST_POLL;
    loop {
        let problem = match running_now(engine, component, settings, target).await {
            Ok(restarts) if settling.observe(Some(restarts), tokio::time::Instant::now(), settings.settle) => {
                return Ok(format!("{}: kubelet runs its manifest's container, Ready", plan.name));
            }
            Ok(_) => failure(ErrorCode::Conflict, "static_pod_not_running", plan, "the container is settling".into()),
            Err(failure) => {
                settling.observe(None, tokio::time::Instant::now(), settings.settle);
                failure
            }
        };
        if crate::deadline::after(tokio::time::Instant::now(), pause) > deadline {
            return Err(problem);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL);
    }
}

/// Whether `component`'s container runs its manifest's image Ready, and its
/// health and version URLs agree with `target`: the Ready container's restart
/// count (0 without Kubernetes access to report it), or the first problem.
pub(super) async fn running_now(
    engine: &Engine,
    component: &ComponentConfig,
    settings: &StaticPodSettings,
    target: &Version,
) -> Result<u32, StepFailure> {
    let image = manifest_image(engine, component, settings, ErrorCode::Conflict).await?;
    running(engine, component, settings, &image, target).await
}

/// Whether `component`'s container runs `image` Ready, and its health and
/// version URLs agree with `target` (see [`running_now`]).
async fn running(
    engine: &Engine,
    component: &ComponentConfig,
    settings: &StaticPodSettings,
    image: &str,
    target: &Version,
) -> Result<u32, StepFailure> {
    let name = component.name.as_str();
    let problem = |code, message: String| StepFailure::new(ErrorCode::Conflict, code, format!("{name}: {message}"));
    let mut restarts = 0;
    if engine.host.kubernetes.configured() {
        let observed = engine
            .host
            .kubernetes
            .static_pod_container(&settings.namespace, &settings.mirror_pod, &settings.container)
            .await
            .map_err(|error| problem("static_pod_not_running", error.to_string()))?;
        if let Some(why) = running_problem(observed.as_ref(), image) {
            return Err(problem("static_pod_not_running", why));
        }
        restarts = observed.map_or(0, |container| container.restart_count);
    }
    let timeout = engine.config.probe.version_timeout;
    let ca = settings.health_ca.as_deref();
    if let Some(url) = &component.health_url {
        engine.host.health.check(url, ca, timeout).await.map_err(|reason| problem("health_check_failed", reason))?;
    }
    if let Some(url) = &settings.version_url {
        let reported =
            engine.host.health.version(url, ca, timeout).await.map_err(|reason| problem("version_mismatch", reason))?;
        if &reported != target {
            return Err(problem("version_mismatch", format!("{url} reports {reported}, expected {target}")));
        }
    }
    Ok(restarts)
}

/// Each static pod's health as the node sees it now: its container runs the
/// manifest's image, Ready, and its health and version URLs agree with the
/// manifest's version (`GET /v1/static-pods`).
pub async fn health(engine: &Engine) -> Vec<StaticPodHealth> {
    let mut pods = Vec::new();
    for component in &engine.config.components {
        let Some(settings) = component.static_pod() else { continue };
        let image = manifest_image(engine, component, settings, ErrorCode::Conflict).await;
        let checked = match &image {
            Err(failure) => Err(failure.message.clone()),
            Ok(image) => match version_of_image(image) {
                None => Err(format!("{}: image {image} has no version tag", component.name)),
                Some(version) => running(engine, component, settings, image, &version).await.map_err(|f| f.message),
            },
        };
        let image = image.ok();
        let (healthy, message) = match checked {
            Ok(_) => (true, "runs its manifest's image, Ready; its URLs answer".to_owned()),
            Err(message) => (false, message),
        };
        pods.push(StaticPodHealth { component: component.name.clone(), image, healthy, message });
    }
    pods
}

/// PreCheck's look at a static pod: its manifest is readable and names the container.
pub(super) async fn manifest_editable(engine: &Engine, plan: &ComponentPlan) -> Result<(), StepFailure> {
    let (component, settings) = settings_of(engine, plan)?;
    manifest_image(engine, component, settings, ErrorCode::ValidationFailed).await.map(|_| ())
}

/// The image the manifest in place names for the component's container; a
/// manifest that names none is `manifest_invalid` with `code`.
async fn manifest_image(
    engine: &Engine,
    component: &ComponentConfig,
    settings: &StaticPodSettings,
    code: ErrorCode,
) -> Result<String, StepFailure> {
    let text = read_manifest(engine, component).await?;
    manifest::container_image(&text, &settings.container)
        .map_err(|error| StepFailure::new(code, "manifest_invalid", format!("{}: {error}", component.name)))
}

async fn read_manifest(engine: &Engine, component: &ComponentConfig) -> Result<String, StepFailure> {
    let unreadable = |reason: String| {
        StepFailure::new(
            ErrorCode::DependencyUnavailable,
            "manifest_unreadable",
            format!("{}: {reason}", component.name),
        )
    };
    let bytes =
        engine.host.files.read(&component.path, MAX_MANIFEST_BYTES).await.map_err(|e| unreadable(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| unreadable("the manifest is not UTF-8".to_owned()))
}

fn settings_of<'a>(
    engine: &'a Engine,
    plan: &ComponentPlan,
) -> Result<(&'a ComponentConfig, &'a StaticPodSettings), StepFailure> {
    engine
        .config
        .components
        .iter()
        .find(|component| component.name == plan.name)
        .and_then(|component| component.static_pod().map(|settings| (component, settings)))
        .ok_or_else(|| not_a_static_pod(plan))
}

fn not_a_static_pod(plan: &ComponentPlan) -> StepFailure {
    failure(ErrorCode::Conflict, "unknown_component", plan, "no longer a static pod in this agent's config".into())
}

fn failure(code: ErrorCode, detail: &'static str, plan: &ComponentPlan, reason: String) -> StepFailure {
    StepFailure::new(code, detail, format!("{}: {reason}", plan.name))
}
