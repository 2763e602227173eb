//! The release catalog (DESIGN.md §6): the releases a cluster may move to, each
//! with its channels, its per-component and per-architecture artifacts, its
//! static-pod images (pinned by digest) and its known risks.
//!
//! ```toml
//! channel = "stable"                     # the cluster follows this channel
//! [[releases]]
//! version = "1.31.2"
//! channels = ["stable", "fast"]
//! [[releases.artifacts]]
//! component = "kubelet"
//! arch = "amd64"
//! source = "https://mirror.example/k8s/v1.31.2/amd64/kubelet"
//! sha256 = "<64 hex>"
//! signature = "<base64 ed25519 over the digest>"   # optional
//! [[releases.images]]
//! component = "kube-apiserver"
//! image = "registry.k8s.io/kube-apiserver:v1.31.2@sha256:<64 hex>"
//! remove_flags = ["--some-removed-flag"]            # optional
//! [[releases.risks]]                                # makes it a conditional update
//! name = "CgroupV1Removed"
//! message = "nodes on cgroup v1 will not start kubelet 1.31"
//! ```
//!
//! # Layout
//!
//! - this file: the validated types and [`Catalog::parse`] / [`Catalog::load`].
//! - `validate`: the raw TOML shape and its checks, every problem with where it is.
//! - `reference`: the checks of one value (image reference, source URL, signature, names).
//! - `select`: which release a request means, the updates a version may take,
//!   a release's artifacts for one architecture.
//! - `file`: the catalog file, reloaded when it changes.

mod file;
mod reference;
mod select;
mod validate;

use std::path::{Path, PathBuf};

use serde::Serialize;
use upkeep_common::Version;
use upkeep_common::ids::{ComponentName, Sha256};
use upkeep_common::image::ImageReference;

use crate::toml_problems::{FileTextError, read_file_text};

pub use file::{CatalogFile, Refresh};
pub use select::{MissingArtifacts, ResolveError, Updates};

/// The largest catalog file read.
pub const MAX_CATALOG_BYTES: u64 = 16 * 1024 * 1024;
/// The most releases one catalog holds.
pub const MAX_RELEASES: usize = 4_096;
/// The most artifacts one release lists (components times architectures).
pub const MAX_ARTIFACTS_PER_RELEASE: usize = 256;
/// The most images one release lists: as many as one upgrade request carries.
pub const MAX_IMAGES_PER_RELEASE: usize = upkeep_common::api::bounds::MAX_ARTIFACTS;
/// The most risks one release lists.
pub const MAX_RISKS_PER_RELEASE: usize = 32;
/// The most channels one release is in.
pub const MAX_CHANNELS_PER_RELEASE: usize = 16;
/// The most flags one image removes from its manifest: as many as a request carries.
pub const MAX_REMOVE_FLAGS: usize = upkeep_common::api::bounds::MAX_REMOVED_FLAGS;

/// A validated release catalog; releases newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// The channel the cluster follows.
    pub channel: String,
    /// Every release, newest first, each version once.
    pub releases: Vec<Release>,
}

/// One release of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Its version, always `MAJOR.MINOR.PATCH` (a vendor suffix allowed).
    pub version: Version,
    /// The channels that offer it.
    pub channels: Vec<String>,
    /// Its binaries, at most one per (component, arch).
    pub artifacts: Vec<ReleaseArtifact>,
    /// Its static-pod images, at most one per component.
    pub images: Vec<ReleaseImage>,
    /// Its known risks: a release with any is a conditional update.
    pub risks: Vec<Risk>,
}

/// One binary of a release, for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseArtifact {
    /// The component it replaces.
    pub component: ComponentName,
    /// The architecture it is built for, matched against the node's report (`amd64`).
    pub arch: String,
    /// Where to fetch it: `https://` or `file://`.
    pub source: String,
    /// Its sha256 digest.
    pub sha256: Sha256,
    /// Base64 of a 64-byte ed25519 signature over the raw digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// One static-pod image of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseImage {
    /// The static pod's component (`kube-apiserver`, `etcd`).
    pub component: ComponentName,
    /// The image reference, always pinned by `@sha256:` digest.
    pub image: ImageReference,
    /// Manifest flags this release removes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_flags: Vec<String>,
}

/// A known risk of moving to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Risk {
    /// A stable name, such as `CgroupV1Removed`.
    pub name: String,
    /// What a person should know before accepting it.
    pub message: String,
}

/// Why a catalog could not be read. Only [`CatalogError::Read`] may pass on
/// its own (a file system hiccup); the others need the file fixed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read (retryable).
    #[error("cannot read the release catalog {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CATALOG_BYTES`].
    #[error("the release catalog {} is larger than {MAX_CATALOG_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The text has problems, each naming where it is.
    #[error("the release catalog{} has {} problem(s):\n{}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        problems.len(),
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl CatalogError {
    /// Whether trying again later, with the file unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CatalogError::Read { .. })
    }
}

impl Catalog {
    /// Parses and validates catalog text, reporting every problem at once.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        validate::parse(text).map_err(|problems| CatalogError::Invalid { path: None, problems })
    }

    /// Reads and validates a catalog file of at most [`MAX_CATALOG_BYTES`].
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = read_file_text(path, MAX_CATALOG_BYTES).map_err(|error| match error {
            FileTextError::Io(source) => CatalogError::Read { path: path.to_owned(), source },
            FileTextError::TooLarge => CatalogError::TooLarge { path: path.to_owned() },
        })?;
        validate::parse(&text).map_err(|problems| CatalogError::Invalid { path: Some(path.to_owned()), problems })
    }
}

#[cfg(test)]
pub(crate) mod tests;
