//! How a rollout is asked for (the spec), how the driver behaves (its
//! settings and their bounds), and why a rollout cannot run.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use upkeep_common::Version;
use upkeep_common::api::{Artifact, DrainOptions, ImageArtifact};
use upkeep_common::ids::NodeName;

use crate::journal::JournalError;
use crate::plan::Limit;

/// The longest a finished node waits before the journal records it: finished
/// nodes are appended in groups, at most this far apart (plus one turn of the
/// driver's loop, 100 ms).
pub const JOURNAL_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// The shortest time between two decisions of the planner: nodes that finish
/// within it are decided on together (each decision reads the whole fleet).
pub const PLAN_INTERVAL: Duration = Duration::from_millis(10);

/// How often the operator's control file (pause, abort) is read.
pub const CONTROL_INTERVAL: Duration = Duration::from_millis(250);

/// The node timeouts a rollout accepts.
pub const NODE_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600);

/// How a rollout is asked for.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    /// The rollout's id, from which every request token derives; a fresh one when absent.
    pub id: Option<String>,
    /// The target version.
    pub target: Version,
    /// The artifacts every node installs, unless its architecture has its own.
    pub artifacts: Vec<Artifact>,
    /// The artifacts for each architecture.
    pub artifacts_by_arch: BTreeMap<String, Vec<Artifact>>,
    /// Each node's architecture, where known.
    pub node_arch: HashMap<NodeName, String>,
    /// Nodes that may be unavailable at once.
    pub max_unavailable: Limit,
    /// Failures tolerated before no new node starts.
    pub max_failures: Limit,
    /// Nodes of one zone in flight at once.
    pub per_zone: Option<usize>,
    /// How long a patched node must stay Ready before its slot is reused.
    pub soak: Duration,
    /// Stage artifacts on every node before any swap.
    pub prestage: bool,
    /// The static pods' new images: every control-plane node's, node after
    /// node, before any kubelet.
    pub images: Vec<ImageArtifact>,
}

/// How the driver behaves.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// Nodes asked at once when reading state or prestaging.
    pub concurrency: usize,
    /// How often a running operation is polled when its agent answers at
    /// once instead of holding the answer until the operation ends; also the
    /// first wait before asking a busy or unreachable agent again.
    pub poll_interval: Duration,
    /// The longest one node's upgrade may take, from its request to the check
    /// of its versions, before it counts as an error (see [`NODE_TIMEOUT_RANGE`]).
    pub node_timeout: Duration,
    /// After a stop (SIGTERM), how long running nodes may still finish before
    /// the rollout ends with them counted as pending.
    pub stop_timeout: Duration,
    /// Drain options sent with every upgrade.
    pub drain: Option<DrainOptions>,
}

impl Default for DriverSettings {
    fn default() -> Self {
        Self {
            concurrency: 32,
            poll_interval: Duration::from_millis(200),
            node_timeout: Duration::from_secs(3600),
            stop_timeout: Duration::from_secs(60),
            drain: None,
        }
    }
}

/// Why a rollout could not run.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal does not match the inventory.
    #[error("the journal names node {0}, which the inventory does not list")]
    UnknownNode(NodeName),
    /// The rollout's limits or settings make no sense.
    #[error("{0}")]
    BadLimits(String),
    /// The journal already holds a rollout.
    #[error("the journal already holds rollout {0}: resume it, or give a new journal")]
    Exists(String),
    /// The rollout was aborted: abort is final, so it is not resumed.
    #[error("rollout {0} was aborted; an aborted rollout is not resumed (start a new one)")]
    Aborted(String),
    /// No etcd snapshot could be taken before the control plane is touched,
    /// so nothing was changed. Retryable: resume once etcd answers.
    #[error("no etcd snapshot before the control plane is touched, so nothing was changed: {0}")]
    EtcdSnapshot(String),
}
