//! The bodies of the service API that are not the service's own records:
//! the upgrade request and its policy overrides, the answers that wrap
//! records (`{"clusters": [...]}`, `{"cluster", "update"}`), and readiness.

use serde::{Deserialize, Serialize};

use crate::service::model::Update;
use crate::service::nodes::NodeView;

use crate::service::view::ClusterView;

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Leads at least one cluster.
    pub leader: bool,
    /// This replica's id.
    pub replica: String,
}

/// The body of `POST /v1/clusters/{cluster}/upgrade`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpgradeRequest {
    /// `MAJOR.MINOR` (the newest patch the catalog holds) or `MAJOR.MINOR.PATCH`.
    pub target_version: String,
    /// The same token always answers with the same update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_token: Option<String>,
    /// Overrides the incremental rule (admin).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Checks and plans without upgrading a node.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Narrower limits than the cluster's policy (admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOverrides>,
}

impl UpgradeRequest {
    /// An upgrade to `version` with nothing else asked.
    pub fn to(version: impl Into<String>) -> Self {
        Self { target_version: version.into(), ..Self::default() }
    }
}

/// Policy overrides as written in the service's config: `"10%"`, `"2"`, `"30s"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyOverrides {
    /// Fewer nodes unavailable at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<String>,
    /// Fewer failures tolerated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<String>,
    /// A longer soak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
}

/// The answer to an upgrade or a version patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    /// The cluster.
    pub cluster: String,
    /// The update, new or the one its request token already named.
    pub update: Update,
}

/// A cluster with the `ETag` of its spec, for a later `If-Match`.
#[derive(Debug, Clone)]
pub struct Tagged<T> {
    /// The answer.
    pub value: T,
    /// The `ETag` header, if the service sent one.
    pub etag: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ClusterList {
    pub(super) clusters: Vec<ClusterView>,
}

#[derive(Deserialize)]
pub(super) struct UpdateList {
    pub(super) updates: Vec<Update>,
}

#[derive(Deserialize)]
pub(super) struct NodeList {
    pub(super) nodes: Vec<NodeView>,
}

#[derive(Serialize)]
pub(super) struct VersionPatch<'a> {
    pub(super) version: &'a str,
}
