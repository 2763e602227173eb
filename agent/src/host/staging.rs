//! Which files in a staging directory (`.upkeep` beside a binary) are no longer
//! needed, decided from their names and ages alone.
//!
//! - A staged file is named `COMPONENT.SHA256.staged`, with the whole digest:
//!   a file is matched by its whole digest, never by a prefix; `*.staged` files
//!   named any other way are removed.
//! - One a running operation will use is kept.
//! - The others are prestaged files: the newest `keep` of the directory are
//!   kept while younger than `max_age`; the rest are removed.
//! - `.NAME.partial` files are downloads cut off by a kill; they are removed
//!   (this runs at the start of a Stage, when no download of the node runs).
//! - Anything else (backups, kept previous binaries) is not this module's.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A file found in a staging directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its path.
    pub path: PathBuf,
    /// When it was last written (`None` when unknown: treated as new).
    pub modified: Option<SystemTime>,
}

/// How many prestaged files to keep, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest this many, per directory...
    pub keep: usize,
    /// ...while younger than this.
    pub max_age: Duration,
}

/// What a file in a staging directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `COMPONENT.SHA256.staged` with a whole lowercase hex digest.
    Staged,
    /// A `.staged` file not named by a whole digest.
    Misnamed,
    /// `.NAME.partial`.
    Partial,
    /// Not a staged file.
    Other,
}

fn kind(path: &Path) -> Kind {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Kind::Other };
    if name.starts_with('.') && name.ends_with(".partial") {
        return Kind::Partial;
    }
    let Some(stem) = name.strip_suffix(".staged") else { return Kind::Other };
    let whole_digest = stem.rsplit_once('.').is_some_and(|(component, digest)| {
        !component.is_empty()
            && digest.len() == 64
            && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if whole_digest { Kind::Staged } else { Kind::Misnamed }
}

/// The files of one staging directory to remove, given the staged paths a
/// running operation needs.
pub fn to_remove(entries: &[DirEntry], needed: &[PathBuf], policy: KeepPolicy, now: SystemTime) -> Vec<PathBuf> {
    let mut remove = Vec::new();
    let mut prestaged = Vec::new();
    for entry in entries {
        match kind(&entry.path) {
            Kind::Other => {}
            Kind::Partial | Kind::Misnamed => remove.push(entry.path.clone()),
            Kind::Staged if needed.contains(&entry.path) => {}
            Kind::Staged => prestaged.push(entry),
        }
    }
    // Newest first; unknown times count as newest.
    prestaged.sort_by_key(|entry| std::cmp::Reverse(entry.modified.unwrap_or(now)));
    for (rank, entry) in prestaged.into_iter().enumerate() {
        let age = entry.modified.and_then(|modified| now.duration_since(modified).ok()).unwrap_or_default();
        if rank >= policy.keep || age > policy.max_age {
            remove.push(entry.path.clone());
        }
    }
    remove
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn entry(name: &str, age_secs: u64, now: SystemTime) -> DirEntry {
        DirEntry {
            path: PathBuf::from("/usr/bin/.upkeep").join(name),
            modified: Some(now - Duration::from_secs(age_secs)),
        }
    }

    fn names(paths: Vec<PathBuf>) -> Vec<String> {
        let mut names: Vec<String> =
            paths.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn keeps_what_is_needed_and_the_newest_young_prestaged_files() {
        let now = SystemTime::now();
        let other = |c: char| format!("kubelet.{}.staged", c.to_string().repeat(64));
        let needed_name = format!("kubelet.{DIGEST}.staged");
        let entries = vec![
            entry(&needed_name, 99_999, now),
            entry(&other('a'), 10, now),
            entry(&other('b'), 20, now),
            entry(&other('c'), 30, now),
            entry(&other('d'), 5, now),
            entry(&format!("kubelet.{}.staged", &DIGEST[..16]), 1, now),
            entry(".kubelet.x.staged.partial", 1, now),
            entry("kubelet.previous", 99_999, now),
            entry("kubelet.op-1.backup", 99_999, now),
        ];
        let needed = vec![PathBuf::from("/usr/bin/.upkeep").join(&needed_name)];
        let policy = KeepPolicy { keep: 2, max_age: Duration::from_secs(25) };
        let removed = names(to_remove(&entries, &needed, policy, now));
        let expected = vec![
            ".kubelet.x.staged.partial".to_owned(),
            format!("kubelet.{}.staged", &DIGEST[..16]),
            other('b'),
            other('c'),
        ];
        assert_eq!(removed, expected);

        let young_only = KeepPolicy { keep: 10, max_age: Duration::from_secs(15) };
        let removed = names(to_remove(&entries, &needed, young_only, now));
        assert!(removed.contains(&other('b')) && removed.contains(&other('c')), "{removed:?}");
        assert!(!removed.contains(&other('a')) && !removed.contains(&other('d')), "{removed:?}");
    }

    #[test]
    fn a_digest_prefix_never_matches() {
        let now = SystemTime::now();
        let near = format!("kubelet.{}0.staged", &DIGEST[..63]);
        let entries = vec![entry(&near, 1, now)];
        let needed = vec![PathBuf::from("/usr/bin/.upkeep").join(format!("kubelet.{DIGEST}.staged"))];
        let policy = KeepPolicy { keep: 0, max_age: Duration::from_secs(3600) };
        assert_eq!(names(to_remove(&entries, &needed, policy, now)), [near]);
        assert_eq!(kind(Path::new("kubelet.ABCDEF.staged")), Kind::Misnamed);
        assert_eq!(kind(Path::new(&format!("{DIGEST}.staged"))), Kind::Misnamed, "a component name is needed");
    }
}
