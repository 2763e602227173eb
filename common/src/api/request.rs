//! Bodies of the agent API's write requests.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{ComponentName, RequestToken, Sha256};
use crate::image::ImageReference;
use crate::version::Version;

/// One binary to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The component it replaces, as named in the agent's config.
    pub component: ComponentName,
    /// Where to fetch it: an `https://` or `file://` URL.
    pub source: String,
    /// Its sha256 digest.
    pub sha256: Sha256,
    /// A base64 ed25519 signature over the raw 32-byte digest, where the agent trusts keys.
    #[serde(default)]
    pub signature: Option<String>,
}

/// One static pod's new image: its manifest in the kubelet's manifest directory
/// is rewritten to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageArtifact {
    /// The static-pod component, as named in the agent's config.
    pub component: ComponentName,
    /// The image, pinned by digest (a tag alone is refused).
    pub image: ImageReference,
    /// Flags this release removed: container arguments equal to one of these
    /// or starting with it followed by `=` are taken out of the manifest.
    #[serde(default)]
    pub remove_flags: Vec<String>,
}

impl ImageArtifact {
    /// The version the component moves to: the image's tag when it names a
    /// version (etcd has versions of its own), else the request's target.
    pub fn version_or(&self, target: &Version) -> Version {
        self.image.version().unwrap_or_else(|| target.clone())
    }
}

/// What a drain does when pods will not leave in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTimeoutAction {
    /// Fail the operation before the swap and uncordon what upkeep cordoned.
    #[default]
    Fail,
    /// Delete the blocking pods (admin only), recorded as an accepted risk.
    Force,
}

/// Drain options for one request; absent fields take the agent's configured defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainOptions {
    /// How long pods may take to leave.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Grace period given to each evicted pod.
    #[serde(default)]
    pub grace_period_seconds: Option<u64>,
    /// Whether pods with local (emptyDir) storage may be evicted.
    #[serde(default)]
    pub allow_local_storage: Option<bool>,
    /// A label selector of pods to leave in place.
    #[serde(default)]
    pub skip_pod_selector: Option<String>,
    /// What happens at the timeout.
    #[serde(default)]
    pub on_timeout: Option<DrainTimeoutAction>,
}

/// The body of `POST /v1/upgrades`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The version to install.
    pub target_version: Version,
    /// The binaries to install, one per component.
    #[serde(default, deserialize_with = "objects")]
    pub artifacts: Vec<Artifact>,
    /// The static pods' new images, one per component.
    #[serde(default, deserialize_with = "objects", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageArtifact>,
    /// Idempotency token: the same token always returns the same operation.
    #[serde(default)]
    pub request_token: Option<RequestToken>,
    /// Override the incremental and skew rules and a Degraded node (admin only).
    #[serde(default)]
    pub force: bool,
    /// Drain options.
    #[serde(default, deserialize_with = "optional_object")]
    pub drain: Option<DrainOptions>,
    /// Run PreCheck only and report what would happen.
    #[serde(default)]
    pub dry_run: bool,
    /// Run PreCheck and Stage only, keeping the staged artifacts for a later
    /// upgrade with the same digests (prestaging).
    #[serde(default)]
    pub stage_only: bool,
    /// The control plane's (oldest) kube-apiserver version; asked of the API server when absent.
    #[serde(default)]
    pub control_plane_version: Option<Version>,
}

impl UpgradeRequest {
    /// The version each component the request names moves to, in the
    /// request's order (its artifacts, then its images): the target for a
    /// binary, the image's tag (or the target) for a static pod.
    pub fn wanted_versions(&self) -> Vec<(&ComponentName, Version)> {
        let binaries = self.artifacts.iter().map(|artifact| (&artifact.component, self.target_version.clone()));
        let images = self.images.iter().map(|image| (&image.component, image.version_or(&self.target_version)));
        binaries.chain(images).collect()
    }
}

/// The body of `POST /v1/cordon`, `/v1/uncordon` and `/v1/rollback`; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    /// Idempotency token: the same token always returns the same operation.
    #[serde(default)]
    pub request_token: Option<RequestToken>,
}

/// The body of `POST /v1/drain`; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Idempotency token: the same token always returns the same operation.
    #[serde(default)]
    pub request_token: Option<RequestToken>,
    /// Drain options.
    #[serde(default, deserialize_with = "optional_object")]
    pub drain: Option<DrainOptions>,
}

/// A nested object. A derived struct would also take a JSON array, field by
/// field in order; a request must name its fields. Errors inside keep their
/// path (`artifacts[0].sha256`), as the fields are read from the same map.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(ObjectOnly)
    }
}

/// Reads an optional nested object (see [`ObjectOnly`]).
fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<ObjectOnly<T>>::deserialize(deserializer)?.map(|object| object.0))
}

/// Reads a list of nested objects (see [`ObjectOnly`]).
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<ObjectOnly<T>>::deserialize(deserializer)?.into_iter().map(|object| object.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_request_reads_the_documented_fields() {
        let json = serde_json::json!({
            "target_version": "v1.31.0",
            "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "ab".repeat(32)}],
            "request_token": "rollout-1:worker-1",
            "force": false,
            "drain": {"timeout_seconds": 300, "on_timeout": "fail"},
            "dry_run": true,
            "control_plane_version": "v1.31.2"
        });
        let request: UpgradeRequest = serde_json::from_value(json).expect("parses");
        assert!(request.dry_run);
        assert_eq!(request.artifacts[0].component.as_str(), "kubelet");
        assert_eq!(request.drain.and_then(|d| d.on_timeout), Some(DrainTimeoutAction::Fail));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = serde_json::json!({"target_version": "v1.31.0", "artifacts": [], "target": "x"});
        assert!(serde_json::from_value::<UpgradeRequest>(json).is_err());
    }

    #[test]
    fn nested_objects_given_as_arrays_are_refused() {
        let artifact =
            serde_json::json!({"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "ab".repeat(32)});
        use serde_json::Value;
        let with = |drain: Value, artifacts: Value| {
            serde_json::from_value::<UpgradeRequest>(serde_json::json!({
                "target_version": "v1.31.0", "artifacts": artifacts, "drain": drain,
            }))
        };
        assert!(with(serde_json::json!({"timeout_seconds": 5}), serde_json::json!([artifact])).is_ok());
        assert!(with(Value::Null, serde_json::json!([artifact])).is_ok());
        assert!(with(serde_json::json!([5, null, null, null, null]), serde_json::json!([artifact])).is_err());
        assert!(with(serde_json::json!([]), serde_json::json!([artifact])).is_err());
        let positional = serde_json::json!(["kubelet", "file:///srv/kubelet", "ab".repeat(32)]);
        assert!(with(Value::Null, serde_json::json!([positional])).is_err());
        let drain = serde_json::from_value::<DrainRequest>(serde_json::json!({"drain": [null, null]}));
        assert!(drain.is_err());
        let unknown = with(serde_json::json!({"zz": 1}), serde_json::json!([artifact])).expect_err("unknown field");
        assert!(unknown.to_string().contains("unknown field `zz`"), "{unknown}");
    }
}
