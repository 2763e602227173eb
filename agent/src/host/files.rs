//! Files on the host: staging artifacts next to the binaries they replace,
//! keeping backups, and swapping binaries with atomic renames.
//!
//! Staged files and backups live in a `.upkeep` directory beside each managed
//! binary, on the same filesystem, so that putting a binary in place (or back)
//! is always a single `rename`, never a copy that a kill could tear.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use upkeep_common::ids::Sha256 as Sha256Digest;

use crate::host::BoxFuture;
use crate::host::fetch::ArtifactReader;
use crate::host::staging::DirEntry;
use crate::store::sync_dir;

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The artifact source could not be read.
    #[error("cannot fetch {source_url}: {reason}")]
    Fetch {
        /// The source URL.
        source_url: String,
        /// Why.
        reason: String,
    },
    /// The source is not one this agent may read (a `file://` path outside
    /// `artifacts.file_roots`); nothing was read from it. Not retryable.
    #[error("{source_url} is not allowed: {reason}")]
    Refused {
        /// The source URL.
        source_url: String,
        /// Why.
        reason: String,
    },
    /// The artifact is larger than the limit.
    #[error("artifact is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A local file operation failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl FileError {
    fn io(path: &Path, error: impl std::fmt::Display) -> Self {
        FileError::Io { path: path.display().to_string(), reason: error.to_string() }
    }
}

/// A staged artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Its sha256 as read while writing it.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// The file operations the engine needs; every one is idempotent.
pub trait Files: Send + Sync {
    /// Free bytes on the filesystem holding `dir` (or its nearest existing parent).
    fn free_bytes<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<u64>>;
    /// Fetches `source` into `destination` (replacing it), at most `max_bytes`,
    /// fsynced, mode 0755; returns its digest.
    fn stage<'a>(
        &'a self,
        source: &'a str,
        destination: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Staged, FileError>>;
    /// The sha256 of a file, `None` when it does not exist.
    fn digest<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Option<Sha256Digest>, FileError>>;
    /// Keeps the current `binary` at `backup` (a hard link) unless `backup` exists.
    fn backup<'a>(&'a self, binary: &'a Path, backup: &'a Path) -> BoxFuture<'a, Result<(), FileError>>;
    /// Renames `from` over `to` and fsyncs the directory.
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, Result<(), FileError>>;
    /// Puts `backup` back at `binary` (the backup stays), atomically.
    fn restore<'a>(&'a self, backup: &'a Path, binary: &'a Path) -> BoxFuture<'a, Result<(), FileError>>;
    /// Removes a file if it exists.
    fn remove<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<(), FileError>>;
    /// Whether a file exists.
    fn exists<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, bool>;
    /// The contents of a file of at most `max_bytes`.
    fn read<'a>(&'a self, path: &'a Path, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FileError>>;
    /// Writes `bytes` to `path` whole or not at all (a temporary file beside
    /// it, fsynced, renamed over it, the directory fsynced), with `mode`.
    fn write<'a>(&'a self, path: &'a Path, bytes: &'a [u8], mode: u32) -> BoxFuture<'a, Result<(), FileError>>;
    /// The files directly in `dir` (nothing when it does not exist).
    fn list<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Vec<DirEntry>>;
    /// Whether `source` can be fetched, asked within `within` (see
    /// [`ArtifactReader::probe`]); why not, when it cannot.
    fn reachable<'a>(&'a self, source: &'a str, within: Duration) -> BoxFuture<'a, Result<(), FileError>>;
}

/// The real filesystem, with artifacts fetched from `file://` or `https://`.
#[derive(Clone)]
pub struct RealFiles {
    reader: ArtifactReader,
}

impl RealFiles {
    /// Files fetching `https://` sources with the given reader.
    pub fn new(reader: ArtifactReader) -> Self {
        Self { reader }
    }
}

/// A `.partial` file being written; removed when dropped unless kept, so that a
/// stage that fails, is cancelled or times out leaves nothing behind.
pub(crate) struct PartialFile {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            // Runs inside a dropped future: a single unlink, no waiting on I/O.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|error| Err(FileError::Io { path: String::new(), reason: error.to_string() }))
}

impl Files for RealFiles {
    fn free_bytes<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            let mut probe = dir.to_path_buf();
            while !probe.exists() {
                if !probe.pop() {
                    return None;
                }
            }
            let statvfs = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&probe)).await.ok()?.ok()?;
            Some(statvfs.blocks_available().saturating_mul(statvfs.fragment_size()))
        })
    }

    fn stage<'a>(
        &'a self,
        source: &'a str,
        destination: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Staged, FileError>> {
        Box::pin(async move {
            let dir = destination.parent().unwrap_or(Path::new("/")).to_path_buf();
            tokio::fs::create_dir_all(&dir).await.map_err(|e| FileError::io(&dir, e))?;
            let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let partial = dir.join(format!(".{name}.partial"));
            let mut guard = PartialFile { path: partial.clone(), keep: false };
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o755)
                .open(&partial)
                .await
                .map_err(|e| FileError::io(&partial, e))?;
            let staged = self.reader.copy_to(source, &mut file, max_bytes).await?;
            file.set_permissions(std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(|e| FileError::io(&partial, e))?;
            file.sync_all().await.map_err(|e| FileError::io(&partial, e))?;
            drop(file);
            tokio::fs::rename(&partial, destination).await.map_err(|e| FileError::io(destination, e))?;
            guard.keep = true;
            blocking(move || sync_dir(&dir).map_err(|e| FileError::io(&dir, e))).await?;
            Ok(staged)
        })
    }

    fn digest<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Option<Sha256Digest>, FileError>> {
        let path = path.to_path_buf();
        Box::pin(blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(digest_of(&bytes))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(FileError::io(&path, error)),
        }))
    }

    fn backup<'a>(&'a self, binary: &'a Path, backup: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        let (binary, backup) = (binary.to_path_buf(), backup.to_path_buf());
        Box::pin(blocking(move || {
            if backup.exists() {
                return Ok(());
            }
            let dir = backup.parent().unwrap_or(Path::new("/")).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|e| FileError::io(&dir, e))?;
            let temporary = dir.join(".backup.tmp");
            let _ = std::fs::remove_file(&temporary);
            std::fs::hard_link(&binary, &temporary).map_err(|e| FileError::io(&binary, e))?;
            std::fs::rename(&temporary, &backup).map_err(|e| FileError::io(&backup, e))?;
            sync_dir(&dir).map_err(|e| FileError::io(&dir, e))
        }))
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        Box::pin(blocking(move || {
            std::fs::rename(&from, &to).map_err(|e| FileError::io(&to, e))?;
            let dir = to.parent().unwrap_or(Path::new("/")).to_path_buf();
            sync_dir(&dir).map_err(|e| FileError::io(&dir, e))
        }))
    }

    fn restore<'a>(&'a self, backup: &'a Path, binary: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        let (backup, binary) = (backup.to_path_buf(), binary.to_path_buf());
        Box::pin(blocking(move || {
            let dir = backup.parent().unwrap_or(Path::new("/")).to_path_buf();
            let temporary = dir.join(".restore.tmp");
            let _ = std::fs::remove_file(&temporary);
            std::fs::hard_link(&backup, &temporary).map_err(|e| FileError::io(&backup, e))?;
            std::fs::rename(&temporary, &binary).map_err(|e| FileError::io(&binary, e))?;
            let binary_dir = binary.parent().unwrap_or(Path::new("/")).to_path_buf();
            sync_dir(&binary_dir).map_err(|e| FileError::io(&binary_dir, e))
        }))
    }

    fn remove<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        let path = path.to_path_buf();
        Box::pin(blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(FileError::io(&path, error)),
        }))
    }

    fn exists<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, bool> {
        let path = path.to_path_buf();
        Box::pin(async move { tokio::fs::try_exists(&path).await.unwrap_or(false) })
    }

    fn read<'a>(&'a self, path: &'a Path, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FileError>> {
        let path = path.to_path_buf();
        Box::pin(blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| FileError::io(&path, e))?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(file, max_bytes.saturating_add(1)), &mut bytes)
                .map_err(|e| FileError::io(&path, e))?;
            if bytes.len() as u64 > max_bytes {
                return Err(FileError::TooLarge { limit: max_bytes });
            }
            Ok(bytes)
        }))
    }

    fn write<'a>(&'a self, path: &'a Path, bytes: &'a [u8], mode: u32) -> BoxFuture<'a, Result<(), FileError>> {
        let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
        Box::pin(blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|e| FileError::io(&dir, e))?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let partial = dir.join(format!(".{name}.partial"));
            let mut guard = PartialFile { path: partial.clone(), keep: false };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&partial)
                .map_err(|e| FileError::io(&partial, e))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(|e| FileError::io(&partial, e))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| FileError::io(&partial, e))?;
            file.sync_all().map_err(|e| FileError::io(&partial, e))?;
            std::fs::rename(&partial, &path).map_err(|e| FileError::io(&path, e))?;
            guard.keep = true;
            sync_dir(&dir).map_err(|e| FileError::io(&dir, e))
        }))
    }

    fn list<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Vec<DirEntry>> {
        let dir = dir.to_path_buf();
        Box::pin(async move {
            let listed = tokio::task::spawn_blocking(move || {
                let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
                entries
                    .flatten()
                    .filter_map(|entry| {
                        let metadata = entry.metadata().ok().filter(|m| m.is_file())?;
                        Some(DirEntry { path: entry.path(), modified: metadata.modified().ok() })
                    })
                    .collect()
            });
            listed.await.unwrap_or_default()
        })
    }

    fn reachable<'a>(&'a self, source: &'a str, within: Duration) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(self.reader.probe(source, within))
    }
}

/// The sha256 of some bytes.
pub fn digest_of(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::from_bytes(&Sha256::digest(bytes).into())
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
