//! `file://` artifact sources, allowed only inside the directories listed in
//! `artifacts.file_roots` (none by default, so no `file://` source at all).
//!
//! [`admit`] is the pure check on the URL's text that admission and Stage both
//! apply: an absolute path without `.` or `..` segments, under a root.
//! [`resolve`] adds the filesystem's view just before the file is opened: the
//! path with every symlink followed must still lie inside a root (itself
//! resolved the same way), and [`confirm_opened`] checks the file actually
//! opened once more. A refused file is never read, so nothing computed over it
//! can be echoed.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// Why a `file://` source was refused or could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSourceError {
    /// `artifacts.file_roots` is empty: this agent accepts no `file://` source.
    /// Not retryable.
    #[error("file:// sources are not enabled on this agent (artifacts.file_roots is empty)")]
    NotEnabled,
    /// The URL is not `file://` followed by an absolute path. Not retryable.
    #[error("a file:// source must name an absolute path (file:///...)")]
    NotAbsolute,
    /// The path has a `.` or `..` segment or an empty one. Not retryable.
    #[error("a file:// source may not contain \".\", \"..\" or empty path segments")]
    NotNormal,
    /// The path is not inside any configured root. Not retryable.
    #[error("the path is outside every directory in artifacts.file_roots")]
    OutsideRoots,
    /// The path is inside a root as written, but following its symlinks leads
    /// out of every root. Not retryable.
    #[error("the path leads outside artifacts.file_roots once its symlinks are followed")]
    EscapesRoots,
    /// The path (or a root) could not be resolved, for example because the
    /// file does not exist yet. Retryable: the file may appear.
    #[error("the file cannot be resolved: {0}")]
    Unresolvable(String),
}

impl FileSourceError {
    /// Whether the source was refused by the policy (as opposed to missing).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, FileSourceError::Unresolvable(_))
    }

    /// The stable error code: `source_not_allowed` for every refusal,
    /// `fetch_failed` for a file that cannot be resolved.
    pub fn code(&self) -> &'static str {
        if self.is_refusal() { "source_not_allowed" } else { "fetch_failed" }
    }
}

/// The path a `file://` source names, if the text alone allows it under `roots`.
pub fn admit(roots: &[PathBuf], source: &str) -> Result<PathBuf, FileSourceError> {
    let rest = source.strip_prefix("file://").ok_or(FileSourceError::NotAbsolute)?;
    if roots.is_empty() {
        return Err(FileSourceError::NotEnabled);
    }
    if !rest.starts_with('/') {
        return Err(FileSourceError::NotAbsolute);
    }
    let segments = rest[1..].split('/');
    if segments.clone().any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(FileSourceError::NotNormal);
    }
    let path = PathBuf::from(rest);
    if roots.iter().any(|root| inside(&path, root)) { Ok(path) } else { Err(FileSourceError::OutsideRoots) }
}

/// The canonical path of a `file://` source, checked against the canonical
/// roots; the file must exist. Uses the filesystem (blocking calls run on
/// tokio's blocking pool).
pub async fn resolve(roots: &[PathBuf], source: &str) -> Result<PathBuf, FileSourceError> {
    let path = admit(roots, source)?;
    let unresolvable = |error: std::io::Error| FileSourceError::Unresolvable(error.to_string());
    let resolved = tokio::fs::canonicalize(&path).await.map_err(unresolvable)?;
    if inside_a_resolved_root(roots, &resolved).await { Ok(resolved) } else { Err(FileSourceError::EscapesRoots) }
}

/// Checks the file actually opened, by the path the kernel gives its
/// descriptor: a directory swapped for a symlink between [`resolve`] and the
/// open cannot lead outside the roots unnoticed.
pub async fn confirm_opened(roots: &[PathBuf], file: &impl AsRawFd) -> Result<(), FileSourceError> {
    let descriptor = format!("/proc/self/fd/{}", file.as_raw_fd());
    let opened = tokio::fs::read_link(&descriptor)
        .await
        .map_err(|error| FileSourceError::Unresolvable(format!("{descriptor}: {error}")))?;
    if inside_a_resolved_root(roots, &opened).await { Ok(()) } else { Err(FileSourceError::EscapesRoots) }
}

/// Whether a path without symlinks is inside one of `roots`, each resolved
/// (a root that does not exist holds nothing).
async fn inside_a_resolved_root(roots: &[PathBuf], resolved: &Path) -> bool {
    for root in roots {
        if let Ok(root) = tokio::fs::canonicalize(root).await
            && inside(resolved, &root)
        {
            return true;
        }
    }
    false
}

/// Whether `path` is `root` itself or below it, compared segment by segment
/// (so `/srv/artifacts-old` is not inside `/srv/artifacts`).
fn inside(path: &Path, root: &Path) -> bool {
    path != root && path.starts_with(root) && !path.components().any(|c| matches!(c, Component::ParentDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/srv/artifacts"), PathBuf::from("/opt/upkeep/cache/")]
    }

    #[test]
    fn only_paths_under_a_root_are_admitted() {
        assert_eq!(admit(&roots(), "file:///srv/artifacts/kubelet"), Ok(PathBuf::from("/srv/artifacts/kubelet")));
        assert_eq!(
            admit(&roots(), "file:///opt/upkeep/cache/v1/kubelet"),
            Ok(PathBuf::from("/opt/upkeep/cache/v1/kubelet"))
        );
        for (source, refusal) in [
            ("file:///etc/shadow", FileSourceError::OutsideRoots),
            ("file:///srv/artifacts-old/kubelet", FileSourceError::OutsideRoots),
            ("file:///srv/artifacts", FileSourceError::OutsideRoots),
            ("file:///srv/artifacts/../../etc/shadow", FileSourceError::NotNormal),
            ("file:///srv/artifacts/./kubelet", FileSourceError::NotNormal),
            ("file:///srv/artifacts//kubelet", FileSourceError::NotNormal),
            ("file:///srv/artifacts/", FileSourceError::NotNormal),
            ("file://srv/artifacts/kubelet", FileSourceError::NotAbsolute),
            ("https://srv/artifacts/kubelet", FileSourceError::NotAbsolute),
        ] {
            assert_eq!(admit(&roots(), source), Err(refusal), "{source}");
        }
        assert_eq!(admit(&[], "file:///srv/artifacts/kubelet"), Err(FileSourceError::NotEnabled));
    }

    #[tokio::test]
    async fn a_symlink_out_of_a_root_is_refused_and_one_inside_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("secret");
        std::fs::create_dir(&root).expect("root");
        std::fs::write(&outside, b"secret").expect("secret");
        std::fs::write(root.join("kubelet"), b"binary").expect("artifact");
        std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink(root.join("kubelet"), root.join("alias")).expect("symlink");
        std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("symlink");
        let roots = vec![root.clone()];
        let url = |name: &str| format!("file://{}", root.join(name).display());

        let canonical_root = std::fs::canonicalize(&root).expect("canonical root");
        assert_eq!(resolve(&roots, &url("kubelet")).await, Ok(canonical_root.join("kubelet")));
        assert_eq!(resolve(&roots, &url("alias")).await, Ok(canonical_root.join("kubelet")));
        assert_eq!(resolve(&roots, &url("escape")).await, Err(FileSourceError::EscapesRoots));
        assert_eq!(resolve(&roots, &url("up/secret")).await, Err(FileSourceError::EscapesRoots));
        let opened = tokio::fs::File::open(root.join("alias")).await.expect("opens");
        assert_eq!(confirm_opened(&roots, &opened).await, Ok(()));
        let opened = tokio::fs::File::open(&outside).await.expect("opens");
        assert_eq!(confirm_opened(&roots, &opened).await, Err(FileSourceError::EscapesRoots));
        let missing = resolve(&roots, &url("missing")).await;
        assert!(matches!(missing, Err(FileSourceError::Unresolvable(_))), "{missing:?}");
        assert_eq!(missing.map_err(|e| e.code()), Err("fetch_failed"));
    }
}
