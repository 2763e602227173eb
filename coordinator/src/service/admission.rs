//! Whether an upgrade request may start an update, and the update it starts.
//! Pure: the caller gives the cluster's policy, catalog, nodes, the caller's
//! identity, an id and the time.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use upkeep_common::api::NodeRole;
use upkeep_common::ids::RequestToken;
use upkeep_common::rules::{IncrementalVerdict, check_incremental};
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail, Identity, Role, Version};
use upkeep_net::routing::forbidden;

use crate::catalog::Catalog;
use crate::plan::Limits;

use super::config::{Policy, PolicyOverrides};
use super::model::{RoleCounters, Update, UpdateParam, UpdateStatus, UpdateType};
use super::nodes::{NodeView, oldest_version};

/// The longest `target_version` accepted.
const MAX_VERSION_TEXT: usize = 64;
/// The most risks one request accepts.
const MAX_ACCEPTED_RISKS: usize = 32;

/// The body of `POST /v1/clusters/{cluster}/upgrade`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    /// `MAJOR.MINOR` (the newest patch the catalog's channel offers) or `MAJOR.MINOR.PATCH`.
    pub target_version: String,
    /// The caller's idempotency token: the same token always answers with the same update.
    #[serde(default)]
    pub request_token: Option<RequestToken>,
    /// Override the incremental rule and the release's risks (admin).
    #[serde(default)]
    pub force: bool,
    /// Run PreCheck only.
    #[serde(default)]
    pub dry_run: bool,
    /// Narrow the cluster's policy (admin).
    #[serde(default)]
    pub policy: Option<PolicyOverrides>,
    /// The names of the release's known risks the caller accepts.
    #[serde(default)]
    pub accept_risks: Vec<String>,
}

/// What an admission needs to know.
pub struct AdmissionInput<'a> {
    /// The cluster.
    pub cluster: &'a str,
    /// Its configured policy.
    pub policy: &'a Policy,
    /// Its catalog.
    pub catalog: &'a Catalog,
    /// Its nodes as last read.
    pub nodes: &'a [NodeView],
    /// Who asks.
    pub identity: &'a Identity,
    /// The new update's id.
    pub id: String,
    /// Now.
    pub now: DateTime<Utc>,
}

fn invalid(field: &str, code: &str, message: String) -> ErrorBody {
    ErrorBody::with_details(ErrorCode::ValidationFailed, message.clone(), vec![ErrorDetail::new(field, code, message)])
}

/// The update `body` starts, or why it may not.
pub fn admit(body: &UpgradeBody, input: AdmissionInput<'_>) -> Result<Update, ErrorBody> {
    let admin = input.identity.allows_on(Role::Admin, input.cluster);
    let scope = format!(" on cluster {}", input.cluster);
    if body.force && !admin {
        return Err(forbidden(input.identity, Role::Admin, &format!("{scope} to force")));
    }
    if body.policy.is_some() && !admin {
        return Err(forbidden(input.identity, Role::Admin, &format!("{scope} to override the policy")));
    }
    if body.target_version.len() > MAX_VERSION_TEXT {
        let message = format!("target_version is longer than {MAX_VERSION_TEXT} characters");
        return Err(invalid("target_version", "too_long", message));
    }
    if body.accept_risks.len() > MAX_ACCEPTED_RISKS || body.accept_risks.iter().any(|r| r.len() > 128) {
        let message = format!("accept_risks takes at most {MAX_ACCEPTED_RISKS} names of at most 128 characters");
        return Err(invalid("accept_risks", "too_long", message));
    }
    let fleet = input.nodes.len();
    let policy = match &body.policy {
        Some(overrides) => input.policy.narrowed(overrides, fleet).map_err(|details| {
            ErrorBody::with_details(
                ErrorCode::ValidationFailed,
                "the policy overrides may only narrow the policy",
                details,
            )
        })?,
        None => input.policy.clone(),
    };
    let release = input.catalog.resolve(&body.target_version).map_err(|error| {
        ErrorBody::with_details(ErrorCode::ValidationFailed, error.to_string(), vec![error.detail("target_version")])
    })?;
    let mut accepted_risks = Vec::new();
    if let Some(current) = oldest_version(input.nodes)
        && let IncrementalVerdict::Refused(refusal) = check_incremental(&current, &release.version, None)
    {
        if !body.force {
            let detail = ErrorDetail::new("target_version", "incremental_rule", refusal.to_string());
            return Err(ErrorBody::with_details(ErrorCode::VersionRefused, refusal.to_string(), vec![detail]));
        }
        accepted_risks.push(format!("IncrementalRule: {refusal}"));
    }
    let unaccepted: Vec<&str> = release
        .risks
        .iter()
        .filter(|risk| !body.accept_risks.contains(&risk.name))
        .map(|risk| risk.name.as_str())
        .collect();
    if !unaccepted.is_empty() && !body.force {
        let message = format!(
            "release {} has known risks; name them in accept_risks to go ahead: {}",
            release.version,
            unaccepted.join(", ")
        );
        return Err(invalid("accept_risks", "risks_not_accepted", message));
    }
    accepted_risks.extend(release.risks.iter().map(|risk| risk.name.clone()));
    Ok(new_update(NewUpdate {
        kind: UpdateType::VersionUpdate,
        target: release.version.clone(),
        policy: &policy,
        force: body.force,
        dry_run: body.dry_run,
        request_token: body.request_token.as_ref().map(|t| t.as_str().to_owned()),
        accepted_risks,
        input,
    }))
}

/// What a new update is made of.
pub struct NewUpdate<'a> {
    /// A version update or a rollback.
    pub kind: UpdateType,
    /// The version it moves to.
    pub target: Version,
    /// The policy it runs under.
    pub policy: &'a Policy,
    /// Whether a rule was overridden.
    pub force: bool,
    /// PreCheck only.
    pub dry_run: bool,
    /// The caller's token.
    pub request_token: Option<String>,
    /// The risks accepted.
    pub accepted_risks: Vec<String>,
    /// The cluster, the caller, the id and the time.
    pub input: AdmissionInput<'a>,
}

/// A new update, InProgress with its tasks not started and every node pending.
pub fn new_update(new: NewUpdate<'_>) -> Update {
    let NewUpdate { kind, target, policy, force, dry_run, request_token, accepted_risks, input } = new;
    let fleet = input.nodes.len();
    let mut params = vec![UpdateParam { kind: "Version".to_owned(), value: target.to_string() }];
    for (kind, value) in [
        ("Force", force.to_string()),
        ("DryRun", dry_run.to_string()),
        ("MaxUnavailable", policy.max_unavailable.to_string()),
        ("MaxFailures", policy.max_failures.to_string()),
    ] {
        params.push(UpdateParam { kind: kind.to_owned(), value });
    }
    Update {
        id: input.id,
        cluster: input.cluster.to_owned(),
        kind,
        params,
        target_version: target,
        status: UpdateStatus::InProgress,
        created_at: input.now,
        ended_at: None,
        requested_by: input.identity.common_name.clone(),
        request_token,
        force,
        accepted_risks,
        limits: Limits {
            max_unavailable: policy.max_unavailable.resolve_nonzero(fleet).max(1),
            max_failures: policy.max_failures.resolve(fleet),
            per_zone: policy.per_zone,
            soak_ms: u64::try_from(policy.soak.as_millis()).unwrap_or(u64::MAX),
        },
        prestage: policy.prestage,
        node_timeout_secs: policy.node_timeout.as_secs(),
        errors: Vec::new(),
        tasks: Update::fresh_tasks(),
        waiting: None,
        counters: counters_all_pending(input.nodes),
    }
}

/// Every node pending, by role.
fn counters_all_pending(nodes: &[NodeView]) -> RoleCounters {
    let mut counters = RoleCounters::default();
    for node in nodes {
        match node.role {
            NodeRole::ControlPlane => counters.control_plane.pending += 1,
            NodeRole::Worker => counters.workers.pending += 1,
        }
    }
    counters
}
