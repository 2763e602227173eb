//! The rollout journal: everything needed to resume a rollout after the
//! coordinator is killed. A snapshot is written atomically (temporary file,
//! fsync, rename, fsync of the directory) at the start and the end; between
//! them each change to a node is appended, fsynced, to `JOURNAL.log` before it
//! is acted on, so a write costs the nodes that changed, not the whole fleet.
//! Loading applies the log of the snapshot's generation; a torn last line is
//! ignored. Beside it, `JOURNAL.control` holds `pause` or `abort` when an
//! operator asks the running rollout to stop starting new nodes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use upkeep_common::Version;
use upkeep_common::api::Artifact;
use upkeep_common::ids::{NodeName, OperationId, RequestToken};

use crate::plan::{Limits, NodeStatus};

/// An error of one node, as reported at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeError {
    /// The node.
    pub node: NodeName,
    /// The step that failed, if the agent named one.
    pub step: Option<String>,
    /// A stable code: the agent's detail code, or `unreachable`, `timeout`...
    pub code: String,
    /// What happened.
    pub message: String,
}

/// One node's record in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalNode {
    /// The node.
    pub name: NodeName,
    /// Its progress.
    pub status: NodeStatus,
    /// The agent's operation, once started.
    pub operation: Option<OperationId>,
    /// Why it failed.
    pub error: Option<NodeError>,
    /// Whether it was seen unavailable.
    pub unavailable: bool,
}

/// The whole journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The rollout's id: request tokens are `ROLLOUT_ID:NODE`.
    pub rollout_id: String,
    /// The target version.
    pub target: Version,
    /// The artifacts sent to every node.
    pub artifacts: Vec<Artifact>,
    /// The limits, resolved.
    pub limits: Limits,
    /// Whether nodes only stage first.
    pub prestage: bool,
    /// Nodes in inventory order.
    pub nodes: Vec<JournalNode>,
    /// When the rollout started.
    pub started_at: DateTime<Utc>,
    /// When the journal was last written.
    pub updated_at: DateTime<Utc>,
    /// Which log belongs to this snapshot.
    #[serde(default)]
    pub generation: u64,
}

/// One appended change: node `index` is now `node`.
#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    generation: u64,
    index: usize,
    node: JournalNode,
}

/// What an operator asked of a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Run,
    /// Stop starting new nodes; resume later.
    Pause,
    /// Stop starting new nodes for good.
    Abort,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal is not valid JSON of the expected shape.
    #[error("{path} is not a rollout journal: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Journal {
    /// The request token for a node's upgrade (or, with `stage`, its prestage):
    /// `ROLLOUT:NODE[:stage]`, or, when that is not a valid token (too long for
    /// one), `h-` and the sha256 of that text. Every request carries a token,
    /// and a resumed rollout derives the same one.
    pub fn token_for(&self, node: &NodeName, stage: bool) -> RequestToken {
        let text = format!("{}:{node}{}", self.rollout_id, if stage { ":stage" } else { "" });
        text.parse().unwrap_or_else(|_| {
            let hashed = format!("h-{}", hex::encode(Sha256::digest(text.as_bytes())));
            hashed.parse().expect("h- and 64 hexadecimal digits make a valid token")
        })
    }

    /// Loads a journal: its snapshot and the changes logged since.
    pub fn load(path: &Path) -> Result<Journal, JournalError> {
        let bytes = fs::read(path).map_err(|source| JournalError::Io { path: path.to_owned(), source })?;
        let mut journal: Journal = serde_json::from_slice(&bytes)
            .map_err(|error| JournalError::Corrupt { path: path.to_owned(), reason: error.to_string() })?;
        let log = fs::read(log_path(path)).unwrap_or_default();
        for line in log.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
            let Ok(entry) = serde_json::from_slice::<LogEntry>(line) else { continue };
            if entry.generation == journal.generation && entry.index < journal.nodes.len() {
                journal.nodes[entry.index] = entry.node;
            }
        }
        Ok(journal)
    }

    /// Writes a new snapshot atomically and starts a new log generation.
    pub fn save(&mut self, path: &Path) -> Result<(), JournalError> {
        self.updated_at = Utc::now();
        self.generation += 1;
        let bytes = serde_json::to_vec(self)
            .map_err(|error| JournalError::Corrupt { path: path.to_owned(), reason: error.to_string() })?;
        write_atomic(path, &bytes)?;
        let log = log_path(path);
        match fs::remove_file(&log) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JournalError::Io { path: log, source }),
        }
    }

    /// Appends the current state of nodes `indexes` to the log, durably.
    pub fn log_nodes(&self, path: &Path, indexes: &[usize]) -> Result<(), JournalError> {
        if indexes.is_empty() {
            return Ok(());
        }
        let log = log_path(path);
        let io = |source| JournalError::Io { path: log.clone(), source };
        let mut text = Vec::new();
        for &index in indexes {
            let entry = LogEntry { generation: self.generation, index, node: self.nodes[index].clone() };
            serde_json::to_writer(&mut text, &entry)
                .map_err(|error| JournalError::Corrupt { path: log.clone(), reason: error.to_string() })?;
            text.push(b'\n');
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&log).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

/// The change log beside a journal.
fn log_path(journal: &Path) -> PathBuf {
    let mut name = journal.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".log");
    journal.with_file_name(name)
}

/// The control file beside a journal.
pub fn control_path(journal: &Path) -> PathBuf {
    let mut name = journal.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".control");
    journal.with_file_name(name)
}

/// Reads what the operator asked (`Run` when there is no control file).
pub fn read_control(journal: &Path) -> Control {
    match fs::read_to_string(control_path(journal)).map(|text| text.trim().to_owned()).as_deref() {
        Ok("pause") => Control::Pause,
        Ok("abort") => Control::Abort,
        _ => Control::Run,
    }
}

/// Asks a running rollout to pause or abort, or clears the request (`Run`).
pub fn write_control(journal: &Path, control: Control) -> Result<(), JournalError> {
    let path = control_path(journal);
    match control {
        Control::Run => match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JournalError::Io { path, source }),
        },
        Control::Pause => write_atomic(&path, b"pause\n"),
        Control::Abort => write_atomic(&path, b"abort\n"),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let io = |source| JournalError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_journal() -> Journal {
        Journal {
            rollout_id: "r1".into(),
            target: "v1.30.3".parse().expect("valid"),
            artifacts: vec![],
            limits: Limits { max_unavailable: 1, max_failures: 0, per_zone: None, soak_ms: 0 },
            prestage: false,
            nodes: vec![JournalNode {
                name: "worker-1".parse().expect("valid"),
                status: NodeStatus::Soaking { until_ms: 5 },
                operation: None,
                error: None,
                unavailable: false,
            }],
            started_at: Utc::now(),
            updated_at: Utc::now(),
            generation: 0,
        }
    }

    #[test]
    fn saves_loads_and_controls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rollout.json");
        let mut journal = sample_journal();
        journal.save(&path).expect("saves");
        let loaded = Journal::load(&path).expect("loads");
        assert_eq!(loaded, journal);
        journal.nodes[0].status = NodeStatus::Patched;
        journal.log_nodes(&path, &[0]).expect("logs");
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("rollout.json.log"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"torn"))
            .expect("torn line");
        assert_eq!(Journal::load(&path).expect("loads").nodes[0].status, NodeStatus::Patched, "the log is applied");
        journal.save(&path).expect("a new snapshot");
        assert!(!dir.path().join("rollout.json.log").exists(), "a snapshot starts a new log");
        assert_eq!(Journal::load(&path).expect("loads").nodes[0].status, NodeStatus::Patched);
        assert_eq!(loaded.token_for(&loaded.nodes[0].name, false).as_str(), "r1:worker-1");
        assert_eq!(loaded.token_for(&loaded.nodes[0].name, true).as_str(), "r1:worker-1:stage");
        assert_eq!(read_control(&path), Control::Run);
        write_control(&path, Control::Pause).expect("pause");
        assert_eq!(read_control(&path), Control::Pause);
        write_control(&path, Control::Abort).expect("abort");
        assert_eq!(read_control(&path), Control::Abort);
        write_control(&path, Control::Run).expect("clear");
        assert_eq!(read_control(&path), Control::Run);
        std::fs::write(&path, b"{").expect("corrupt");
        assert!(matches!(Journal::load(&path), Err(JournalError::Corrupt { .. })));
    }

    #[test]
    fn a_node_name_too_long_for_a_token_still_gets_one_and_always_the_same() {
        let long: NodeName =
            format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63)).parse().expect("valid");
        let other: NodeName =
            format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "d".repeat(63)).parse().expect("valid");
        let journal = Journal { rollout_id: "rollout-20261201-0001".into(), ..sample_journal() };
        let token = journal.token_for(&long, false);
        assert!(token.as_str().starts_with("h-") && token.as_str().len() == 66, "{token}");
        assert_eq!(journal.token_for(&long, false), token, "derived again the same");
        assert_ne!(journal.token_for(&long, true), token, "the prestage has its own");
        assert_ne!(journal.token_for(&other, false), token, "another node has its own");
    }
}
