//! Deciding whether an upgrade request may start: field checks beyond parsing
//! (422 with a detail per bad field), the incremental and skew rules, the
//! Degraded node, and what `force` overrides (recorded as accepted risks).
//! Pure: every input is a parameter.

use base64::Engine as _;
use upkeep_common::api::{AcceptedRisk, UpgradeRequest};
use upkeep_common::ids::ComponentName;
use upkeep_common::rules::{IncrementalRefusal, IncrementalVerdict, SkewVerdict, check_incremental, check_skew};
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Version};

use crate::config::{AgentConfig, ComponentConfig};
use crate::host::file_source;

/// Where in the request a component's new content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// `artifacts[i]`: a binary.
    Artifact(usize),
    /// `images[i]`: a static pod's image.
    Image(usize),
}

/// One component the upgrade will change.
#[derive(Debug, Clone)]
pub struct AdmittedComponent {
    /// Its configuration.
    pub config: ComponentConfig,
    /// Where its new content is in the request.
    pub requested: Requested,
    /// Its observed version.
    pub from_version: Option<Version>,
    /// The version it moves to: the request's target for a binary, the
    /// image's tag for a static pod (etcd has versions of its own).
    pub to_version: Version,
}

/// Each component the request names: where, the field to name in a
/// refusal, and the version it moves to.
fn requested_components(request: &UpgradeRequest) -> Vec<(&ComponentName, Requested, String, Version)> {
    let artifacts = request.artifacts.len();
    let wanted = request.wanted_versions().into_iter().enumerate();
    wanted
        .map(|(index, (component, version))| match index.checked_sub(artifacts) {
            None => (component, Requested::Artifact(index), format!("artifacts[{index}].component"), version),
            Some(image) => (component, Requested::Image(image), format!("images[{image}].component"), version),
        })
        .collect()
}

/// An admitted upgrade.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The components to change (empty: the node is already at the target).
    pub components: Vec<AdmittedComponent>,
    /// What `force` overrode.
    pub accepted_risks: Vec<AcceptedRisk>,
    /// Notes for the PreCheck step, such as a skew rule that could not be checked.
    pub notes: Vec<String>,
}

/// What admission needs to know about the node.
pub struct NodeFacts<'a> {
    /// Each component's observed version (None: its probe failed).
    pub observed: &'a dyn Fn(&str) -> Option<Version>,
    /// Versions kept for rollback, by component.
    pub previous: &'a dyn Fn(&str) -> Option<Version>,
    /// The Degraded reason, if the node is Degraded.
    pub degraded: Option<&'a str>,
    /// The control plane's version as the API server reports it (None: no
    /// Kubernetes access configured, or not asked).
    pub reported_control_plane: Option<Version>,
}

/// Checks the request's fields against the config; every problem is a detail.
pub fn check_fields(config: &AgentConfig, request: &UpgradeRequest) -> Result<(), ErrorBody> {
    let mut details = upkeep_common::api::bounds::upgrade_problems(request);
    if request.artifacts.is_empty() && request.images.is_empty() {
        details.push(ErrorDetail::new("artifacts", "empty", "at least one artifact or image is required"));
    }
    let requested = requested_components(request);
    for (position, (name, kind, field, _)) in requested.iter().enumerate() {
        let component = config.components.iter().find(|c| &&c.name == name);
        let problem = match (component, kind) {
            (None, _) => Some(("unknown_component", format!("{name} is not a component this agent manages"))),
            (Some(c), Requested::Artifact(_)) if c.static_pod().is_some() => {
                Some(("not_a_binary", format!("{name} is a static pod: send its image in images")))
            }
            (Some(c), Requested::Image(_)) if c.static_pod().is_none() => {
                Some(("not_a_static_pod", format!("{name} is a binary: send it in artifacts")))
            }
            _ if requested[..position].iter().any(|earlier| earlier.0 == *name) => {
                Some(("duplicate", format!("{name} is listed twice")))
            }
            _ => None,
        };
        if let Some((code, message)) = problem {
            details.push(ErrorDetail::new(field.clone(), code, message));
        }
    }
    for (index, artifact) in request.artifacts.iter().enumerate() {
        let field = |name: &str| format!("artifacts[{index}].{name}");
        if artifact.source.starts_with("file://") {
            if let Err(refusal) = file_source::admit(&config.artifacts.file_roots, &artifact.source) {
                details.push(ErrorDetail::new(field("source"), refusal.code(), refusal.to_string()));
            }
        } else if !artifact.source.starts_with("https://") {
            details.push(ErrorDetail::new(
                field("source"),
                "unsupported_source",
                "source must be an absolute file:// URL or an https:// URL",
            ));
        }
        match &artifact.signature {
            Some(signature) if decode_signature(signature).is_none() => details.push(ErrorDetail::new(
                field("signature"),
                "invalid_format",
                "signature must be the base64 of a 64-byte ed25519 signature",
            )),
            None if !config.artifacts.trusted_keys.is_empty() => details.push(ErrorDetail::new(
                field("signature"),
                "signature_required",
                "this agent trusts signing keys, so every artifact must be signed",
            )),
            _ => {}
        }
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(ErrorBody::with_details(ErrorCode::ValidationFailed, "the upgrade request has invalid fields", details))
    }
}

/// Decodes a base64 ed25519 signature.
pub fn decode_signature(text: &str) -> Option<[u8; 64]> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

/// Applies the rules; `force` turns refusals into accepted risks.
pub fn admit(config: &AgentConfig, request: &UpgradeRequest, node: &NodeFacts<'_>) -> Result<Admission, ErrorBody> {
    let mut admission = Admission { components: Vec::new(), accepted_risks: Vec::new(), notes: Vec::new() };
    let mut refusals = Vec::new();
    let control_plane = control_plane_for_skew(request, node, &mut admission, &mut refusals);
    if let Some(reason) = node.degraded {
        if request.force {
            admission.accepted_risks.push(risk("degraded_node", format!("the node was Degraded: {reason}")));
        } else {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("the node is Degraded ({reason}); an admin may upgrade anyway with force"),
            ));
        }
    }
    for (component_name, requested, field, target) in requested_components(request) {
        let target = &target;
        let Some(component) = config.components.iter().find(|c| &c.name == component_name) else { continue };
        let name = component.name.as_str();
        let observed = (node.observed)(name);
        match &observed {
            None if request.force => {
                admission.accepted_risks.push(risk("unknown_version", format!("the version of {name} was unknown")));
            }
            None => {
                return Err(ErrorBody::new(
                    ErrorCode::DependencyUnavailable,
                    format!(
                        "the version of {name} is unknown (its version command failed); the rules cannot be applied"
                    ),
                ));
            }
            Some(current) => match check_incremental(current, target, (node.previous)(name).as_ref()) {
                IncrementalVerdict::NoOp => continue,
                IncrementalVerdict::Allowed(_) => {}
                IncrementalVerdict::Refused(refusal) if request.force => {
                    admission.accepted_risks.push(risk("incremental_rule", format!("{name}: {refusal}")));
                }
                IncrementalVerdict::Refused(refusal) => {
                    refusals.push(ErrorDetail::new(
                        field.clone(),
                        refusal_code(&refusal),
                        format!("{name}: {refusal}"),
                    ));
                }
            },
        }
        if component.kubernetes_skew {
            match &control_plane {
                None => admission.notes.push(format!("{name}: skew not checked, the control-plane version is unknown")),
                Some(control_plane) => match check_skew(target, control_plane) {
                    SkewVerdict::Allowed => {}
                    SkewVerdict::Refused(refusal) if request.force => {
                        admission.accepted_risks.push(risk("skew_rule", refusal.to_string()));
                    }
                    SkewVerdict::Refused(refusal) => {
                        refusals.push(ErrorDetail::new("target_version", "skew", refusal.to_string()));
                    }
                },
            }
        }
        admission.components.push(AdmittedComponent {
            config: component.clone(),
            requested,
            from_version: observed,
            to_version: target.clone(),
        });
    }
    if !refusals.is_empty() {
        return Err(ErrorBody::with_details(
            ErrorCode::VersionRefused,
            "the version rules refuse this target; an admin may override them with force",
            refusals,
        ));
    }
    Ok(admission)
}

/// The control-plane version the skew rule is checked against. The rule is
/// against the oldest API server: a claimed version older than the one the API
/// server reports is the stricter and is used as is (mid-upgrade, the load
/// balancer may answer from a newer server); a claim newer than the report
/// needs `force`, recorded as an accepted risk.
fn control_plane_for_skew(
    request: &UpgradeRequest,
    node: &NodeFacts<'_>,
    admission: &mut Admission,
    refusals: &mut Vec<ErrorDetail>,
) -> Option<Version> {
    match (&request.control_plane_version, &node.reported_control_plane) {
        (Some(claimed), Some(reported)) if claimed > reported => {
            let message =
                format!("the claimed control-plane version {claimed} is newer than the API server's {reported}");
            if request.force {
                admission.accepted_risks.push(risk("control_plane_claim", message));
            } else {
                refusals.push(ErrorDetail::new("control_plane_version", "newer_than_api_server", message));
            }
            Some(claimed.clone())
        }
        (Some(claimed), Some(_)) => Some(claimed.clone()),
        (Some(claimed), None) => {
            admission
                .notes
                .push(format!("control-plane version {claimed} as the request claims (no API server to ask)"));
            Some(claimed.clone())
        }
        (None, reported) => reported.clone(),
    }
}

fn refusal_code(refusal: &IncrementalRefusal) -> &'static str {
    match refusal {
        IncrementalRefusal::Downgrade { .. } => "downgrade",
        IncrementalRefusal::SkipsMinor { .. } => "skips_minor",
        IncrementalRefusal::MajorChange { .. } => "major_change",
    }
}

fn risk(code: &str, message: String) -> AcceptedRisk {
    AcceptedRisk { code: code.to_owned(), message }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
