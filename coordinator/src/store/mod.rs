//! The coordinator's store: a small key-value interface that the one-shot
//! rollout and the service keep their state in, so one engine runs over
//! either. The embedded implementation ([`embedded::EmbeddedStore`], one redb
//! file) is the default; a store on etcd implements the same trait, with each
//! [`Batch`] as one transaction fenced by the leader's lease.
//!
//! Keys are `/`-separated text, values are bytes (JSON here). A [`Batch`] is
//! applied whole or not at all, and is durable once [`Store::commit`] returns:
//! callers group their writes so that one commit (one fsync) carries many changes.

use futures_util::future::BoxFuture;

pub mod embedded;

/// What a store call returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// The most entries one [`Store::scan`] returns.
pub const MAX_SCAN: usize = 100_000;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets `key` to the value.
    Put(String, Vec<u8>),
    /// Removes `key` (nothing happens when it is absent).
    Delete(String),
}

/// Writes applied together, atomically and durably.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) -> &mut Self {
        self.writes.push(Write::Put(key.into(), value));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.writes.push(Write::Delete(key.into()));
        self
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }
}

/// How much a store has written since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches committed (each one durable write: one fsync for the embedded store).
    pub commits: u64,
    /// Keys put or deleted.
    pub writes: u64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error("{0} is in use by another process")]
    InUse(String),
    /// The store's file or service failed; the write did not happen.
    #[error("the store failed: {0}")]
    Failed(String),
    /// A stored value is not what the reader expects.
    #[error("stored value {key} is unreadable: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether trying again may succeed. The embedded store's errors are its
    /// disk's and never are; a networked store's lost connection would be.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A key-value store with atomic, durable batches.
pub trait Store: Send + Sync {
    /// The value of `key`, if set.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Entries whose key starts with `prefix`, in key order, after the key
    /// `after` when given, at most `limit` (and at most [`MAX_SCAN`]).
    fn scan<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(String, Vec<u8>)>>;

    /// Applies every write of `batch` at once, durably.
    fn commit(&self, batch: Batch) -> StoreFuture<'_, ()>;

    /// What the store has written since it was opened.
    fn stats(&self) -> StoreStats;
}

/// Reads `key` as JSON of type `T`.
pub async fn get_json<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<T>, StoreError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => decode_json(key, &bytes).map(Some),
    }
}

/// Every entry under `prefix`, read page by page, each decoded as JSON.
pub async fn scan_json<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(prefix, after.as_deref(), MAX_SCAN).await?;
        let full = page.len() == MAX_SCAN;
        for (key, bytes) in page {
            let value = decode_json(&key, &bytes)?;
            after = Some(key.clone());
            entries.push((key, value));
        }
        if !full {
            return Ok(entries);
        }
    }
}

/// The value stored at `key` decoded as JSON of type `T`.
pub fn decode_json<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt { key: key.to_owned(), reason: error.to_string() })
}

/// `value` as JSON bytes for a [`Batch`].
pub fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our stored types are plain data: serializing them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
