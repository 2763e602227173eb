//! Reading the catalog for a decision: which release a requested version
//! means, which updates a cluster at some version may take, and what a node
//! of one architecture installs for a release. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use upkeep_common::api::{Artifact, ImageArtifact};
use upkeep_common::ids::ComponentName;
use upkeep_common::rules::{IncrementalVerdict, check_incremental};
use upkeep_common::{ErrorDetail, Version};

use super::{Catalog, Release};

/// Why a requested version names no release. None is retryable: the request or
/// the catalog must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The text is not `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`.
    #[error("{requested:?} is not a version: {reason}")]
    Invalid {
        /// What was asked for.
        requested: String,
        /// Why it is not a version.
        reason: String,
    },
    /// No release of the catalog has that version (or, for `MAJOR.MINOR`, that minor).
    #[error("version {requested} is not in the release catalog")]
    NotInCatalog {
        /// What was asked for.
        requested: String,
    },
    /// The catalog holds the version, but not in the channel the cluster follows.
    #[error("version {version} is in the release catalog but not in channel {channel} (only in {})", offered.join(", "))]
    NotInChannel {
        /// The release that matched.
        version: Version,
        /// The cluster's channel.
        channel: String,
        /// The channels that offer it.
        offered: Vec<String>,
    },
}

impl ResolveError {
    /// A stable code for the error's detail.
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::Invalid { .. } => "invalid_version",
            ResolveError::NotInCatalog { .. } => "version_not_in_catalog",
            ResolveError::NotInChannel { .. } => "version_not_in_channel",
        }
    }

    /// The error as a detail of the request's `field` (a 422's details).
    pub fn detail(&self, field: &str) -> ErrorDetail {
        ErrorDetail::new(field, self.code(), self.to_string())
    }
}

/// The updates a version may take, newest first, as the cluster view lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updates<'a> {
    /// Releases without known risks.
    pub available: Vec<&'a Release>,
    /// Releases with known risks (each carries them).
    pub conditional: Vec<&'a Release>,
}

/// A release lacks artifacts for an architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("release {version} has no {} artifact for {arch}{}", missing.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
    if offered.is_empty() { String::new() } else { format!(" (it has artifacts for {})", offered.join(", ")) })]
pub struct MissingArtifacts {
    /// The release.
    pub version: Version,
    /// The node's architecture.
    pub arch: String,
    /// The components the release lists for other architectures but not this one.
    pub missing: Vec<ComponentName>,
    /// The architectures the release has artifacts for.
    pub offered: Vec<String>,
}

/// Whether a version's text writes out its patch number (`1.31.2`, not `1.31`).
pub(super) fn names_patch(text: &str) -> bool {
    let core = text.trim().trim_start_matches('v');
    core.split(['+', '-']).next().unwrap_or_default().split('.').count() == 3
}

impl Catalog {
    /// The release a requested version means, in the channel the cluster follows:
    ///
    /// - `MAJOR.MINOR`: the newest patch of that minor that the cluster's
    ///   channel offers (a newer patch offered only in another channel is not
    ///   chosen: a platform asking for "1.31" means the newest 1.31 its
    ///   channel carries).
    /// - `MAJOR.MINOR.PATCH` (vendor suffix allowed): exactly that release,
    ///   which must be in the cluster's channel too.
    ///
    /// A version the catalog holds only in other channels is
    /// [`ResolveError::NotInChannel`], so the caller can say where it is.
    pub fn resolve(&self, requested: &str) -> Result<&Release, ResolveError> {
        let version: Version = requested
            .parse()
            .map_err(|error| ResolveError::Invalid { requested: requested.to_owned(), reason: format!("{error}") })?;
        let exact = names_patch(requested);
        if !exact && version.suffix().is_some() {
            let reason = "MAJOR.MINOR takes no suffix; name the release as MAJOR.MINOR.PATCH".to_owned();
            return Err(ResolveError::Invalid { requested: requested.to_owned(), reason });
        }
        let matches = |release: &&Release| {
            if exact { release.version == version } else { release.version.same_minor(&version) }
        };
        let mut found = self.releases.iter().filter(matches).peekable();
        let Some(newest) = found.peek().copied() else {
            return Err(ResolveError::NotInCatalog { requested: requested.to_owned() });
        };
        found.find(|release| release.in_channel(&self.channel)).ok_or_else(|| ResolveError::NotInChannel {
            version: newest.version.clone(),
            channel: self.channel.clone(),
            offered: newest.channels.clone(),
        })
    }

    /// The release of exactly `version`, in any channel (an update that was
    /// accepted keeps its release even if the channel moved on).
    pub fn release(&self, version: &Version) -> Option<&Release> {
        self.releases.iter().find(|release| &release.version == version)
    }

    /// The releases of the cluster's channel that the incremental rule lets a
    /// cluster at `current` move to (a newer patch, or the next minor), newest
    /// first; those with known risks are the conditional ones.
    pub fn updates_from(&self, current: &Version) -> Updates<'_> {
        let (conditional, available) = self
            .releases
            .iter()
            .filter(|release| release.in_channel(&self.channel))
            .filter(|release| {
                matches!(check_incremental(current, &release.version, None), IncrementalVerdict::Allowed(_))
            })
            .partition(|release| !release.risks.is_empty());
        Updates { available, conditional }
    }
}

impl Release {
    /// Whether `channel` offers this release.
    pub fn in_channel(&self, channel: &str) -> bool {
        self.channels.iter().any(|offered| offered == channel)
    }

    /// The components this release has artifacts for, in name order, each once.
    pub fn components(&self) -> Vec<&ComponentName> {
        let set: BTreeSet<&ComponentName> = self.artifacts.iter().map(|artifact| &artifact.component).collect();
        set.into_iter().collect()
    }

    /// What a node of each architecture the release covers whole installs.
    pub fn artifacts_by_arch(&self) -> BTreeMap<String, Vec<Artifact>> {
        self.artifacts
            .iter()
            .filter_map(|artifact| Some((artifact.arch.clone(), self.artifacts_for(&artifact.arch).ok()?)))
            .collect()
    }

    /// The static pods' images, as an upgrade request carries them.
    pub fn image_artifacts(&self) -> Vec<ImageArtifact> {
        self.images
            .iter()
            .map(|image| ImageArtifact {
                component: image.component.clone(),
                image: image.image.clone(),
                remove_flags: image.remove_flags.clone(),
            })
            .collect()
    }

    /// What a node of `arch` installs: one artifact for every component of
    /// the release. Refused when the release lacks any of them for `arch`.
    pub fn artifacts_for(&self, arch: &str) -> Result<Vec<Artifact>, Box<MissingArtifacts>> {
        let chosen: Vec<Artifact> = self
            .artifacts
            .iter()
            .filter(|artifact| artifact.arch == arch)
            .map(|artifact| Artifact {
                component: artifact.component.clone(),
                source: artifact.source.clone(),
                sha256: artifact.sha256.clone(),
                signature: artifact.signature.clone(),
            })
            .collect();
        let missing: Vec<ComponentName> = self
            .components()
            .into_iter()
            .filter(|component| !chosen.iter().any(|artifact| artifact.component == **component))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(chosen);
        }
        let offered: BTreeSet<&String> = self.artifacts.iter().map(|artifact| &artifact.arch).collect();
        Err(Box::new(MissingArtifacts {
            version: self.version.clone(),
            arch: arch.to_owned(),
            missing,
            offered: offered.into_iter().cloned().collect(),
        }))
    }
}
