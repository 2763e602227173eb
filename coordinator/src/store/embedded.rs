//! The embedded store: one redb database file, every batch one write
//! transaction committed with immediate durability. Calls run on tokio's
//! blocking threads so a commit's fsync never stalls the runtime.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, DatabaseError, ReadableDatabase, TableDefinition, TableError};

use super::{Batch, MAX_SCAN, Store, StoreError, StoreFuture, StoreStats, Write};

/// The database's page cache: the service reads back little (an update's
/// record lives in memory while it runs), so a small cache is enough.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The one table: text keys, byte values.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// A store in one redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    path: PathBuf,
    commits: AtomicU64,
    writes: AtomicU64,
}

impl EmbeddedStore {
    /// Opens the database at `path`, creating it when absent.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let database = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.display().to_string()),
            other => StoreError::Failed(format!("{}: {other}", path.display())),
        })?;
        let inner = Inner { database, path: path.to_owned(), commits: AtomicU64::new(0), writes: AtomicU64::new(0) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on a blocking thread.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(&inner))
                .await
                .map_err(|error| StoreError::Failed(format!("a store call stopped: {error}")))?
        })
    }
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(error.to_string())
}

impl Inner {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.database.begin_read().map_err(failed)?;
        let table = match read.open_table(ENTRIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(failed(error)),
        };
        Ok(table.get(key).map_err(failed)?.map(|value| value.value().to_vec()))
    }

    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let read = self.database.begin_read().map_err(failed)?;
        let table = match read.open_table(ENTRIES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(failed(error)),
        };
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut entries = Vec::new();
        for entry in table.range::<&str>((start, Bound::Unbounded)).map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            if !key.value().starts_with(prefix) || entries.len() >= limit.min(MAX_SCAN) {
                break;
            }
            entries.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(entries)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let write = self.database.begin_write().map_err(failed)?;
        {
            let mut table = write.open_table(ENTRIES).map_err(failed)?;
            for change in batch.writes() {
                match change {
                    Write::Put(key, value) => {
                        table.insert(key.as_str(), value.as_slice()).map_err(failed)?;
                    }
                    Write::Delete(key) => {
                        table.remove(key.as_str()).map_err(failed)?;
                    }
                }
            }
        }
        write.commit().map_err(failed)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(batch.writes().len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key))
    }

    fn scan<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Vec<u8>)>> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.blocking(move |inner| inner.scan(&prefix, after.as_deref(), limit))
    }

    fn commit(&self, batch: Batch) -> StoreFuture<'_, ()> {
        if batch.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.blocking(move |inner| inner.commit(batch))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.inner.commits.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{get_json, scan_json};

    #[tokio::test]
    async fn batches_persist_across_reopening_and_scans_keep_to_their_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        let store = EmbeddedStore::open(&path).expect("opens");
        assert_eq!(store.get("a/1").await.expect("reads"), None, "an empty store reads nothing");
        assert!(store.scan("a/", None, 10).await.expect("scans").is_empty());
        let mut batch = Batch::new();
        batch.put("a/1", b"1".to_vec()).put("a/2", b"\"two\"".to_vec()).put("a/3", b"3".to_vec());
        batch.put("ab", b"0".to_vec()).put("b/1", b"9".to_vec());
        store.commit(batch).await.expect("commits");
        let mut removal = Batch::new();
        removal.delete("a/3").delete("never-set");
        store.commit(removal).await.expect("commits");
        assert_eq!(store.stats(), StoreStats { commits: 2, writes: 7 });
        drop(store);

        let store = EmbeddedStore::open(&path).expect("reopens");
        let keys = |entries: Vec<(String, Vec<u8>)>| entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(store.scan("a/", None, 10).await.expect("scans")), ["a/1", "a/2"]);
        assert_eq!(keys(store.scan("a/", Some("a/1"), 10).await.expect("scans")), ["a/2"]);
        assert_eq!(keys(store.scan("a/", None, 1).await.expect("scans")), ["a/1"]);
        assert_eq!(get_json::<String>(&store, "a/2").await.expect("reads").as_deref(), Some("two"));
        assert!(matches!(get_json::<String>(&store, "a/1").await, Err(StoreError::Corrupt { .. })));
        let numbers: Vec<(String, u32)> = scan_json(&store, "b/").await.expect("scans");
        assert_eq!(numbers, [("b/1".to_owned(), 9)]);
    }
}
