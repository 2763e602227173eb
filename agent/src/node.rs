//! The node's state as the agent knows it, and the `ETag` that changes with it.
//!
//! With `[kubernetes]`, `cordoned` is what the Node's `spec.unschedulable` said
//! at its last read (whoever cordoned it), and the Available condition follows
//! the Node too (see [`crate::availability`]).
//!
//! The `ETag` covers what a client may act on (phase, cordoned, versions,
//! conditions, current operation, history) and not the host facts or probe
//! times, which change on every refresh: `If-Match` with a fresh `ETag`
//! therefore fails exactly when the node changed in a way that matters.
//!
//! The tag is computed when it is first read after a change, not at every
//! change: an operation changes the state at every step, and a client reads
//! the tag far less often.

use std::sync::{OnceLock, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use upkeep_common::Version;
use upkeep_common::api::{
    ComponentState, Condition, ConditionStatus, ConditionType, HistoryEntry, HostFacts, NodePhase, NodeState,
};
use upkeep_common::ids::{ComponentName, OperationId};

use crate::availability::{NodeReading, availability};
use crate::config::AgentConfig;
use crate::host::ProbeError;
use crate::host::kubernetes::NodeObservation;

/// A quoted strong entity tag, such as `"3f2a..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// The header value, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an `If-Match` header value matches this tag (`*` matches any).
    pub fn matches_if_match(&self, header: &str) -> bool {
        header.split(',').map(str::trim).any(|candidate| candidate == "*" || candidate == self.0)
    }
}

/// The node state, shared by the request handlers and the refresh tasks.
pub struct NodeView {
    inner: RwLock<Snapshot>,
}

struct Snapshot {
    state: NodeState,
    /// The tag of `state`, once a reader has asked for it since the last change.
    etag: OnceLock<ETag>,
    /// The last read of the Node (only with `[kubernetes]`).
    node: Option<NodeReading>,
    /// What the last successful read said (kept while later reads fail).
    last_observed: Option<NodeObservation>,
}

impl Snapshot {
    /// Makes `cordoned` say what the Node said, when it was read.
    fn apply_node(&mut self) {
        if let Some(observed) = &self.last_observed {
            self.state.cordoned = observed.unschedulable;
        }
    }

    fn set_availability(&mut self, now: DateTime<Utc>) {
        let decided = availability(&self.state.components, self.node.as_ref());
        Condition::set(
            &mut self.state.conditions,
            ConditionType::Available,
            decided.status,
            decided.reason,
            &decided.message,
            now,
        );
    }

    /// Forgets the tag of the state before the change.
    fn forget_tag(&mut self) {
        self.etag = OnceLock::new();
    }

    fn etag(&self) -> &ETag {
        self.etag.get_or_init(|| compute_etag(&self.state))
    }
}

/// The part of the state the `ETag` is computed from.
#[derive(Serialize)]
struct Tagged<'a> {
    phase: NodePhase,
    cordoned: bool,
    components: Vec<TaggedComponent<'a>>,
    conditions: &'a [Condition],
    current_operation: &'a Option<OperationId>,
    history: &'a [HistoryEntry],
}

/// A component without its probe time.
#[derive(Serialize)]
struct TaggedComponent<'a> {
    name: &'a ComponentName,
    observed_version: &'a Option<Version>,
    desired_version: &'a Option<Version>,
    probe_error: &'a Option<String>,
}

fn compute_etag(state: &NodeState) -> ETag {
    let tagged = Tagged {
        phase: state.phase,
        cordoned: state.cordoned,
        components: state
            .components
            .iter()
            .map(|c| TaggedComponent {
                name: &c.name,
                observed_version: &c.observed_version,
                desired_version: &c.desired_version,
                probe_error: &c.probe_error,
            })
            .collect(),
        conditions: &state.conditions,
        current_operation: &state.current_operation,
        history: &state.history,
    };
    let bytes = serde_json::to_vec(&tagged).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    ETag(format!("\"{}\"", hex::encode(&digest[..12])))
}

impl NodeView {
    /// The state before any probe has run: versions unknown, Available Unknown.
    pub fn new(config: &AgentConfig, host: HostFacts, now: DateTime<Utc>) -> Self {
        let components = config
            .components
            .iter()
            .map(|component| ComponentState {
                name: component.name.clone(),
                observed_version: None,
                desired_version: None,
                observed_at: None,
                probe_error: None,
            })
            .collect();
        let mut conditions = Vec::new();
        Condition::set(
            &mut conditions,
            ConditionType::Available,
            ConditionStatus::Unknown,
            "NotProbed",
            "versions not probed yet",
            now,
        );
        Condition::set(&mut conditions, ConditionType::Progressing, ConditionStatus::False, "NoOperation", "", now);
        Condition::set(&mut conditions, ConditionType::Degraded, ConditionStatus::False, "Healthy", "", now);
        let state = NodeState {
            name: config.node_name.clone(),
            role: config.role,
            phase: NodePhase::Idle,
            cordoned: false,
            components,
            conditions,
            current_operation: None,
            history: Vec::new(),
            host,
        };
        Self { inner: RwLock::new(Snapshot { state, etag: OnceLock::new(), node: None, last_observed: None }) }
    }

    /// The current state and its tag.
    pub fn snapshot(&self) -> (NodeState, ETag) {
        let guard = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard.state.clone(), guard.etag().clone())
    }

    /// The phase alone (cheap: nothing is cloned).
    pub fn phase(&self) -> NodePhase {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).state.phase
    }

    /// The current tag alone.
    pub fn etag(&self) -> ETag {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).etag().clone()
    }

    /// Applies a change and forgets the old tag; `cordoned` stays what the Node
    /// said at its last read, when it was read.
    pub fn update(&self, change: impl FnOnce(&mut NodeState)) {
        let mut guard = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut guard.state);
        guard.apply_node();
        guard.forget_tag();
    }

    /// Records a read of the Node: `cordoned` and the Available condition follow it.
    pub fn record_node(&self, reading: NodeReading, now: DateTime<Utc>) {
        let mut guard = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let NodeReading::Read(observed) = &reading {
            guard.last_observed = Some(observed.clone());
        }
        guard.node = Some(reading);
        guard.apply_node();
        guard.set_availability(now);
        guard.forget_tag();
    }

    /// Records one round of version probes and sets the Available condition.
    pub fn record_probes(&self, results: Vec<(ComponentName, Result<Version, ProbeError>)>, now: DateTime<Utc>) {
        let mut guard = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        {
            let state = &mut guard.state;
            for (name, result) in results {
                let Some(component) = state.components.iter_mut().find(|c| c.name == name) else { continue };
                component.observed_at = Some(now);
                match result {
                    Ok(version) => {
                        component.observed_version = Some(version);
                        component.probe_error = None;
                    }
                    Err(error) => {
                        component.observed_version = None;
                        component.probe_error = Some(error.to_string());
                    }
                }
            }
        }
        guard.set_availability(now);
        guard.forget_tag();
    }

    /// Replaces the host facts (does not change the tag).
    pub fn set_host_facts(&self, host: HostFacts) {
        let mut guard = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.state.host = host;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upkeep_common::api::LoadAverage;

    fn config() -> AgentConfig {
        crate::config::sample_config(&["kubelet"])
    }

    fn host(uptime_seconds: u64) -> HostFacts {
        HostFacts {
            arch: "amd64".into(),
            os: "test".into(),
            kernel: "test".into(),
            cpus: 1,
            memory_total_bytes: 1,
            memory_available_bytes: 1,
            disk_path: "/".into(),
            disk_free_bytes: None,
            uptime_seconds,
            load: LoadAverage { one: 0.0, five: 0.0, fifteen: 0.0 },
        }
    }

    #[test]
    fn etag_follows_versions_not_host_facts() {
        let now = Utc::now();
        let view = NodeView::new(&config(), host(1), now);
        let first = view.etag();
        view.set_host_facts(host(2));
        assert_eq!(view.etag(), first, "host facts do not change the tag");
        let kubelet: ComponentName = "kubelet".parse().expect("valid");
        view.record_probes(vec![(kubelet.clone(), Ok("v1.30.2".parse().expect("valid")))], now);
        let probed = view.etag();
        assert_ne!(probed, first);
        view.record_probes(vec![(kubelet.clone(), Ok("v1.30.2".parse().expect("valid")))], now);
        assert_eq!(view.etag(), probed, "the same observation keeps the tag");
        view.record_probes(vec![(kubelet, Ok("v1.31.0".parse().expect("valid")))], now);
        assert_ne!(view.etag(), probed);
    }

    #[test]
    fn a_tag_read_after_unread_changes_is_the_tag_of_the_latest_state() {
        let now = Utc::now();
        let view = NodeView::new(&config(), host(1), now);
        let idle = view.etag();
        view.update(|state| state.phase = NodePhase::Upgrading);
        view.update(|state| state.cordoned = true);
        let (state, tag) = view.snapshot();
        assert_eq!(state.phase, NodePhase::Upgrading);
        assert_ne!(tag, idle, "two changes nobody read still change the tag");
        assert_eq!(view.etag(), tag, "the tag alone and the snapshot's agree");
        let fresh = NodeView::new(&config(), host(1), now);
        fresh.update(|state| {
            state.phase = NodePhase::Upgrading;
            state.cordoned = true;
        });
        assert_eq!(fresh.etag(), tag, "the tag depends on the state, not on when it was computed");
        view.update(|state| {
            state.phase = NodePhase::Idle;
            state.cordoned = false;
        });
        assert_eq!(view.etag(), idle, "back to the first state, back to its tag");
    }

    #[test]
    fn failed_probe_clears_the_version_and_the_available_condition() {
        let now = Utc::now();
        let view = NodeView::new(&config(), host(1), now);
        let kubelet: ComponentName = "kubelet".parse().expect("valid");
        view.record_probes(vec![(kubelet, Err(ProbeError::Timeout(std::time::Duration::from_secs(1))))], now);
        let (state, _) = view.snapshot();
        assert_eq!(state.components[0].observed_version, None);
        assert!(state.components[0].probe_error.as_deref().is_some_and(|e| e.contains("did not finish")));
        let available = state.conditions.iter().find(|c| c.kind == ConditionType::Available).expect("present");
        assert_eq!(available.status, ConditionStatus::False);
        assert_eq!(available.message, "no version from: kubelet");
    }

    #[test]
    fn cordoned_and_available_follow_the_node_once_it_was_read() {
        use crate::host::kubernetes::ReadyCondition;
        let now = Utc::now();
        let view = NodeView::new(&config(), host(1), now);
        let kubelet: ComponentName = "kubelet".parse().expect("valid");
        view.record_probes(vec![(kubelet, Ok("v1.30.2".parse().expect("valid")))], now);
        let observed = NodeObservation {
            unschedulable: true,
            cordoned_by: None,
            ready: Some(ReadyCondition { status: "True".into(), last_heartbeat: Some(now), reason: String::new() }),
            kubelet_version: Some("v1.30.2".into()),
        };
        view.record_node(NodeReading::Read(observed), now);
        view.update(|state| state.cordoned = false);
        let (state, _) = view.snapshot();
        assert!(state.cordoned, "the engine's own idea does not override what the Node said");
        let available = state.conditions.iter().find(|c| c.kind == ConditionType::Available).expect("present");
        assert_eq!((available.status, available.reason.as_str()), (ConditionStatus::False, "Cordoned"));
        view.record_node(NodeReading::Failed("API server down".into()), now);
        view.update(|state| state.cordoned = false);
        let (state, _) = view.snapshot();
        assert!(state.cordoned, "a failed read keeps what the last read said");
        let available = state.conditions.iter().find(|c| c.kind == ConditionType::Available).expect("present");
        assert_eq!((available.status, available.reason.as_str()), (ConditionStatus::Unknown, "NodeUnreadable"));
    }

    #[test]
    fn if_match_accepts_lists_and_star() {
        let tag = ETag("\"abc\"".into());
        assert!(tag.matches_if_match("\"abc\""));
        assert!(tag.matches_if_match("\"x\", \"abc\""));
        assert!(tag.matches_if_match("*"));
        assert!(!tag.matches_if_match("\"abd\""));
    }
}
