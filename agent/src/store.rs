//! Durable state under the state directory: the node record and one file per
//! operation, each written atomically (temporary file, fsync, rename, fsync of
//! the directory), so a kill at any instant leaves either the old or the new
//! version of every file, never a torn one.
//!
//! ```text
//! STATE_DIR/node.json                 history, conditions, cordon marker, previous versions
//! STATE_DIR/operations/ID.json        one operation with the engine's private progress
//! STATE_DIR/tokens/KEY.json            a request token and its operation, kept after the
//!                                      operation left the recent list (see engine/tokens.rs)
//! ```
//!
//! A simulated host keeps the same records in memory instead ([`Store::memory`]):
//! each write replaces a record whole, as the atomic rename does on disk.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds something that is not the expected JSON.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error(path))?;
    sync_dir(dir)
}

/// Fsyncs a directory so a rename or new entry in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// The directory of operation records.
const OPERATIONS: &str = "operations";
/// The directory of request-token records.
const TOKENS: &str = "tokens";

/// Where records are kept.
#[derive(Debug, Clone)]
enum Backend {
    /// Files under a state directory.
    Dir(PathBuf),
    /// Records in memory, shared by every engine opened on it (a simulated
    /// node's disk, which outlives a simulated crash of its agent).
    Memory(Arc<Mutex<BTreeMap<String, Vec<u8>>>>),
}

/// One agent's saved state.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for table in [OPERATIONS, TOKENS] {
            let path = dir.join(table);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        Ok(Store { backend: Backend::Dir(dir.to_owned()) })
    }

    /// An empty store in memory.
    pub fn memory() -> Store {
        Store { backend: Backend::Memory(Arc::default()) }
    }

    fn node_key() -> &'static str {
        "node.json"
    }

    fn key(table: &str, name: &str) -> String {
        format!("{table}/{name}.json")
    }

    fn write(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Dir(dir) => write_atomic(&dir.join(key), &bytes),
            Backend::Memory(records) => {
                // Kept at its length: the encoder's spare room, held for every
                // record of thousands of in-memory agents, would be most of it.
                let mut bytes = bytes;
                bytes.shrink_to_fit();
                records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key.to_owned(), bytes);
                Ok(())
            }
        }
    }

    fn read(&self, key: &str) -> Result<Option<(PathBuf, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Dir(dir) => {
                let path = dir.join(key);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some((path, bytes))),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(io_error(&path)(error)),
                }
            }
            Backend::Memory(records) => Ok(records
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(key)
                .map(|bytes| (PathBuf::from(key), bytes.clone()))),
        }
    }

    /// Saves the node record.
    pub fn save_node<T: Serialize>(&self, record: &T) -> Result<(), StoreError> {
        self.write(Self::node_key(), encode(Self::node_key(), record)?)
    }

    /// Loads the node record, `None` on first start.
    pub fn load_node<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        self.read(Self::node_key())?.map(|(path, bytes)| decode(&path, &bytes)).transpose()
    }

    /// Saves one operation.
    pub fn save_operation<T: Serialize>(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.save_in(OPERATIONS, id, record)
    }

    /// Loads every saved operation (in no particular order).
    pub fn load_operations<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.load_table(OPERATIONS)
    }

    /// Removes an operation's record (when pruning old operations).
    pub fn remove_operation(&self, id: &str) -> Result<(), StoreError> {
        self.remove_from(OPERATIONS, id)
    }

    /// Saves a request token's record under `key` (a file-name-safe digest of the token).
    pub fn save_token<T: Serialize>(&self, key: &str, record: &T) -> Result<(), StoreError> {
        self.save_in(TOKENS, key, record)
    }

    /// Loads one request token's record.
    pub fn load_token<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let key = Self::key(TOKENS, key);
        self.read(&key)?.map(|(path, bytes)| decode(&path, &bytes)).transpose()
    }

    /// Loads every request token's record (in no particular order).
    pub fn load_tokens<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.load_table(TOKENS)
    }

    /// Removes a request token's record.
    pub fn remove_token(&self, key: &str) -> Result<(), StoreError> {
        self.remove_from(TOKENS, key)
    }

    fn save_in<T: Serialize>(&self, table: &str, name: &str, record: &T) -> Result<(), StoreError> {
        let key = Self::key(table, name);
        let bytes = encode(&key, record)?;
        self.write(&key, bytes)
    }

    fn load_table<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>, StoreError> {
        match &self.backend {
            Backend::Dir(dir) => {
                let dir = dir.join(table);
                let mut records = Vec::new();
                for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
                    let path = entry.map_err(io_error(&dir))?.path();
                    let is_record = path.extension().is_some_and(|e| e == "json")
                        && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if is_record {
                        let bytes = fs::read(&path).map_err(io_error(&path))?;
                        records.push(decode(&path, &bytes)?);
                    }
                }
                Ok(records)
            }
            Backend::Memory(records) => {
                let prefix = format!("{table}/");
                records
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, bytes)| decode(Path::new(key), bytes))
                    .collect()
            }
        }
    }

    fn remove_from(&self, table: &str, name: &str) -> Result<(), StoreError> {
        let key = Self::key(table, name);
        match &self.backend {
            Backend::Dir(dir) => {
                let path = dir.join(&key);
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(io_error(&path)(error)),
                }
            }
            Backend::Memory(records) => {
                records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&key);
                Ok(())
            }
        }
    }
}

fn encode<T: Serialize>(key: &str, record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|error| StoreError::Corrupt { path: key.into(), reason: error.to_string() })
}

fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt { path: path.to_owned(), reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        assert_eq!(store.load_node::<Vec<u32>>().expect("loads"), None);
        store.save_node(&vec![1u32, 2]).expect("saves");
        store.save_node(&vec![3u32]).expect("replaces");
        assert_eq!(store.load_node::<Vec<u32>>().expect("loads"), Some(vec![3]));
        store.save_operation("op-1", &"one").expect("saves");
        store.save_operation("op-2", &"two").expect("saves");
        let mut operations: Vec<String> = store.load_operations().expect("loads");
        operations.sort();
        assert_eq!(operations, ["one", "two"]);
        store.remove_operation("op-1").expect("removes");
        store.remove_operation("op-1").expect("removing twice is fine");
        assert_eq!(store.load_operations::<String>().expect("loads"), ["two"]);
    }

    #[test]
    fn no_temporary_file_is_left_and_leftovers_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        store.save_operation("op-1", &1u8).expect("saves");
        std::fs::write(dir.path().join("operations/.op-2.json.tmp"), b"{torn").expect("write leftover");
        assert_eq!(store.load_operations::<u8>().expect("loads"), [1]);
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("reads").map(|e| e.expect("entry").file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn the_memory_store_keeps_records_like_the_directory() {
        let store = Store::memory();
        let reopened = store.clone();
        store.save_node(&vec![1u32]).expect("saves");
        store.save_operation("op-1", &"one").expect("saves");
        assert_eq!(reopened.load_node::<Vec<u32>>().expect("loads"), Some(vec![1]));
        assert_eq!(reopened.load_operations::<String>().expect("loads"), ["one"]);
        reopened.remove_operation("op-1").expect("removes");
        assert!(store.load_operations::<String>().expect("loads").is_empty());
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("opens");
        std::fs::write(dir.path().join("node.json"), b"{not json").expect("write");
        let error = store.load_node::<Vec<u8>>().expect_err("corrupt");
        assert!(error.to_string().contains("node.json is corrupt"), "{error}");
    }
}
