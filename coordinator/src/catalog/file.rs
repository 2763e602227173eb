//! The catalog file of one cluster, reloaded when it changes: its modification
//! time or its length. A broken file keeps the catalog already loaded and says
//! why; only the first load must succeed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Catalog, CatalogError};

/// What a file looked like when it was last read. A rewrite that keeps both
/// the length and the modification time (within the file system's timestamp
/// resolution) is seen at the next change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(path: &Path) -> Result<Stamp, CatalogError> {
        let metadata =
            std::fs::metadata(path).map_err(|source| CatalogError::Read { path: path.to_owned(), source })?;
        Ok(Stamp { modified: metadata.modified().ok(), len: metadata.len() })
    }
}

/// What [`CatalogFile::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The file has not changed since it was last read.
    Unchanged,
    /// The file changed and its new catalog is now current.
    Reloaded,
    /// The file changed (or vanished) and could not be loaded: the previous
    /// catalog stays current and [`CatalogFile::last_error`] says why.
    Kept,
}

/// A catalog file and the catalog last loaded from it.
#[derive(Debug)]
pub struct CatalogFile {
    path: PathBuf,
    current: Arc<Catalog>,
    seen: Option<Stamp>,
    last_error: Option<CatalogError>,
}

impl CatalogFile {
    /// Loads the file for the first time; a missing or broken file is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<CatalogFile, CatalogError> {
        let path = path.into();
        let stamp = Stamp::of(&path)?;
        let catalog = Catalog::load(&path)?;
        Ok(CatalogFile { path, current: Arc::new(catalog), seen: Some(stamp), last_error: None })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The catalog in force: the last one that loaded.
    pub fn current(&self) -> Arc<Catalog> {
        Arc::clone(&self.current)
    }

    /// Why the file's latest content is not in force, if it is not.
    pub fn last_error(&self) -> Option<&CatalogError> {
        self.last_error.as_ref()
    }

    /// Loads the file again if its modification time or length changed.
    pub fn refresh(&mut self) -> Refresh {
        let stamp = match Stamp::of(&self.path) {
            Ok(stamp) => stamp,
            Err(error) => {
                self.seen = None;
                self.last_error = Some(error);
                return Refresh::Kept;
            }
        };
        if self.seen == Some(stamp) {
            return Refresh::Unchanged;
        }
        self.seen = Some(stamp);
        match Catalog::load(&self.path) {
            Ok(catalog) => {
                self.current = Arc::new(catalog);
                self.last_error = None;
                Refresh::Reloaded
            }
            Err(error) => {
                self.last_error = Some(error);
                Refresh::Kept
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::SAMPLE;
    use super::*;

    #[test]
    fn a_broken_reload_keeps_the_old_catalog_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("releases.toml");
        std::fs::write(&path, SAMPLE).expect("write");
        let mut file = CatalogFile::open(&path).expect("valid catalog");
        let first = file.current();
        assert_eq!(file.refresh(), Refresh::Unchanged);

        std::fs::write(&path, SAMPLE.replace("version = \"1.31.2\"", "version = \"1.31.2\"\ncolour = \"red\""))
            .expect("write");
        assert_eq!(file.refresh(), Refresh::Kept);
        assert_eq!(*file.current(), *first);
        let why = file.last_error().expect("the error is kept").to_string();
        assert!(why.contains("releases[1].colour (line ") && why.ends_with("): unknown key"), "{why}");
        assert_eq!(file.refresh(), Refresh::Unchanged, "a broken file is not parsed again until it changes");
        assert!(file.last_error().is_some());

        std::fs::remove_file(&path).expect("remove");
        assert_eq!(file.refresh(), Refresh::Kept);
        assert!(matches!(file.last_error(), Some(CatalogError::Read { .. })));
        assert_eq!(*file.current(), *first);

        std::fs::write(&path, SAMPLE.replace("1.33.0", "1.33.1")).expect("write");
        assert_eq!(file.refresh(), Refresh::Reloaded);
        assert!(file.last_error().is_none());
        assert!(file.current().resolve("1.33.1").is_ok());
        assert!(file.current().resolve("1.33.0").is_err());
    }

    #[test]
    fn the_first_load_must_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = CatalogFile::open(dir.path().join("absent.toml")).expect_err("missing");
        assert!(matches!(missing, CatalogError::Read { .. }) && missing.is_retryable());
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, "channel = ").expect("write");
        let broken = CatalogFile::open(&path).expect_err("broken");
        assert!(matches!(broken, CatalogError::Invalid { .. }) && !broken.is_retryable(), "{broken}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.toml");
        let padding = format!("#{}\n", "x".repeat(1024 * 1024));
        std::fs::write(&path, format!("{SAMPLE}{}", padding.repeat(17))).expect("write");
        assert!(matches!(Catalog::load(&path), Err(CatalogError::TooLarge { .. })));
    }
}
