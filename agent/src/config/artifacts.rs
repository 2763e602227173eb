//! `[artifacts]`: where artifacts may come from and how they are checked.

use std::path::{Component, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

/// Artifact limits and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSettings {
    /// Largest artifact accepted, in bytes.
    pub max_bytes: u64,
    /// CA bundle for `https://` sources; the Mozilla roots when absent.
    pub ca_file: Option<PathBuf>,
    /// ed25519 public keys (32 raw bytes each); when any is set, every artifact
    /// must carry a signature over its sha256 digest made by one of them.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Directories `file://` sources may be read from (absolute, without `.`
    /// or `..`); empty means no `file://` source is accepted.
    pub file_roots: Vec<PathBuf>,
    /// Prestaged files (staged for a later upgrade, needed by no running
    /// operation) kept in each staging directory: the newest this many...
    pub keep_prestaged: usize,
    /// ...and only while younger than this. Older or further ones are removed
    /// when the next Stage runs.
    pub prestaged_max_age: Duration,
}

impl Default for ArtifactSettings {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            ca_file: None,
            trusted_keys: Vec::new(),
            file_roots: Vec::new(),
            keep_prestaged: 2,
            prestaged_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawArtifacts {
    max_bytes: Option<u64>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    #[serde(default)]
    file_roots: Vec<PathBuf>,
    keep_prestaged: Option<u64>,
    prestaged_max_age_secs: Option<u64>,
}

pub(super) fn validate_artifacts(raw: RawArtifacts, problems: &mut Problems) -> ArtifactSettings {
    use base64::Engine as _;
    let default = ArtifactSettings::default();
    let max_bytes = problems
        .bounded("artifacts.max_bytes", raw.max_bytes, (1, 16 * 1024 * 1024 * 1024), "")
        .unwrap_or(default.max_bytes);
    let ca_file = raw.ca_file.and_then(|path| problems.absolute_path("artifacts.ca_file", Some(path)));
    let mut trusted_keys = Vec::new();
    for (index, key) in raw.trusted_keys.iter().enumerate() {
        let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim()).ok();
        let bytes: Option<[u8; 32]> = decoded.and_then(|bytes| bytes.try_into().ok());
        match bytes.filter(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok()) {
            Some(bytes) => trusted_keys.push(bytes),
            None => problems
                .add(format!("artifacts.trusted_keys[{index}]"), "must be a base64 ed25519 public key (32 bytes)"),
        }
    }
    let file_roots = raw
        .file_roots
        .into_iter()
        .enumerate()
        .filter_map(|(index, root)| file_root(&format!("artifacts.file_roots[{index}]"), root, problems))
        .collect();
    let keep_prestaged =
        problems.count("artifacts.keep_prestaged", raw.keep_prestaged, default.keep_prestaged, (0, 100));
    let prestaged_max_age = problems.seconds(
        "artifacts.prestaged_max_age_secs",
        raw.prestaged_max_age_secs,
        default.prestaged_max_age,
        (60, 365 * 24 * 3600),
    );
    ArtifactSettings { max_bytes, ca_file, trusted_keys, file_roots, keep_prestaged, prestaged_max_age }
}

/// A root as written: absolute, and without `.` or `..` segments, so that a
/// source's path can be compared with it segment by segment.
fn file_root(key: &str, root: PathBuf, problems: &mut Problems) -> Option<PathBuf> {
    let root = problems.absolute_path(key, Some(root))?;
    let normal = root.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal {
        problems.add(key, format!("{:?} may not contain \".\" or \"..\"", root.display().to_string()));
        return None;
    }
    Some(root)
}
