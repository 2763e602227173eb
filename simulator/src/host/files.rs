//! The simulated machine's disk: every file lives in memory; a rename or
//! restore into the manifest directory wakes the simulated kubelet.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use upkeep_agent::host::BoxFuture;
use upkeep_agent::host::files::{FileError, Files, Staged};
use upkeep_agent::host::staging::DirEntry;
use upkeep_common::ids::Sha256 as Sha256Digest;

use super::{Machine, digest};
use crate::faults::FaultKind;

fn missing(path: &Path) -> FileError {
    FileError::Io { path: path.display().to_string(), reason: "no such file".to_owned() }
}

/// The machine's disk.
pub(super) struct SimFiles(pub(super) Arc<Machine>);

impl Files for SimFiles {
    fn free_bytes<'a>(&'a self, _dir: &'a Path) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async { Some(100 * 1024 * 1024 * 1024) })
    }

    fn stage<'a>(
        &'a self,
        source: &'a str,
        destination: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Staged, FileError>> {
        Box::pin(async move {
            self.0.step_delay().await;
            let Some(mut bytes) = self.0.artifacts.get(source).cloned() else {
                return Err(FileError::Fetch { source_url: source.to_owned(), reason: "not found".to_owned() });
            };
            if self.0.fault() == Some(FaultKind::CorruptArtifact)
                && let Some(last) = bytes.last_mut()
            {
                *last ^= 0xff;
            }
            if bytes.len() as u64 > max_bytes {
                return Err(FileError::TooLarge { limit: max_bytes });
            }
            let staged = Staged { sha256: digest(&bytes), size: bytes.len() as u64 };
            self.0.files().insert(destination.to_path_buf(), bytes);
            self.0.landed(destination, false);
            Ok(staged)
        })
    }

    fn digest<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Option<Sha256Digest>, FileError>> {
        Box::pin(async move { Ok(self.0.files().get(path).map(|bytes| digest(bytes))) })
    }

    fn backup<'a>(&'a self, binary: &'a Path, backup: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            {
                let mut files = self.0.files();
                if !files.contains_key(backup) {
                    let bytes = files.get(binary).cloned().ok_or_else(|| missing(binary))?;
                    files.insert(backup.to_path_buf(), bytes);
                }
            }
            self.0.landed(backup, false);
            if self.0.crash_armed.swap(false, Ordering::Relaxed) {
                // The agent dies here: it never gets past this point, and the
                // fleet stops its engine and starts a new one on the same disk.
                self.0.crashed.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let mut files = self.0.files();
            let bytes = files.remove(from).ok_or_else(|| missing(from))?;
            if to == self.0.binary {
                self.0.swaps.fetch_add(1, Ordering::Relaxed);
            }
            files.insert(to.to_path_buf(), bytes);
            drop(files);
            self.0.landed(to, false);
            Ok(())
        })
    }

    fn restore<'a>(&'a self, backup: &'a Path, binary: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let mut files = self.0.files();
            let bytes = files.get(backup).cloned().ok_or_else(|| missing(backup))?;
            files.insert(binary.to_path_buf(), bytes);
            drop(files);
            self.0.landed(binary, true);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            let removed = self.0.files().remove(path).is_some();
            if removed && super::in_manifest_dir(path) {
                self.0.manifest_changed();
            }
            Ok(())
        })
    }

    fn read<'a>(&'a self, path: &'a Path, max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, FileError>> {
        Box::pin(async move {
            let bytes = self.0.files().get(path).cloned().ok_or_else(|| missing(path))?;
            if bytes.len() as u64 > max_bytes { Err(FileError::TooLarge { limit: max_bytes }) } else { Ok(bytes) }
        })
    }

    fn write<'a>(&'a self, path: &'a Path, bytes: &'a [u8], _mode: u32) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            self.0.files().insert(path.to_path_buf(), bytes.to_vec());
            self.0.landed(path, false);
            Ok(())
        })
    }

    fn list<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Vec<DirEntry>> {
        Box::pin(async move {
            let files = self.0.files();
            files
                .keys()
                .filter(|path| path.parent() == Some(dir))
                .map(|path| DirEntry { path: path.clone(), modified: None })
                .collect()
        })
    }

    fn reachable<'a>(&'a self, source: &'a str, _within: Duration) -> BoxFuture<'a, Result<(), FileError>> {
        Box::pin(async move {
            match self.0.artifacts.contains_key(source) {
                true => Ok(()),
                false => Err(FileError::Fetch { source_url: source.to_owned(), reason: "not found".to_owned() }),
            }
        })
    }

    fn exists<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.0.files().contains_key(path) || self.0.artifacts.contains_key(&format!("file://{}", path.display()))
        })
    }
}
