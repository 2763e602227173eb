//! Whether the node is available for work, decided from the version probes and,
//! with `[kubernetes]`, from the Node itself: a cordoned Node (whoever cordoned
//! it) or one whose Ready condition is not `True` is not available.

use upkeep_common::api::{ComponentState, ConditionStatus};

use crate::host::kubernetes::NodeObservation;

/// The last read of the node's Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeReading {
    /// What the Node said.
    Read(NodeObservation),
    /// Why it could not be read.
    Failed(String),
}

/// The Available condition: status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase reason.
    pub reason: &'static str,
    /// A sentence for a person.
    pub message: String,
}

impl Availability {
    fn new(status: ConditionStatus, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into() }
    }
}

/// The Available condition from the components' probes and the Node (`None`
/// without `[kubernetes]`). Probes not run yet leave it Unknown.
pub fn availability(components: &[ComponentState], node: Option<&NodeReading>) -> Availability {
    if components.iter().all(|c| c.observed_at.is_none()) {
        return Availability::new(ConditionStatus::Unknown, "NotProbed", "versions not probed yet");
    }
    let failing: Vec<&str> = components.iter().filter(|c| c.probe_error.is_some()).map(|c| c.name.as_str()).collect();
    if !failing.is_empty() {
        return Availability::new(
            ConditionStatus::False,
            "VersionProbeFailed",
            format!("no version from: {}", failing.join(", ")),
        );
    }
    match node {
        None => Availability::new(ConditionStatus::True, "VersionsObserved", "every component reports its version"),
        Some(NodeReading::Failed(reason)) => Availability::new(
            ConditionStatus::Unknown,
            "NodeUnreadable",
            format!("the Node could not be read: {reason}"),
        ),
        Some(NodeReading::Read(observed)) if observed.unschedulable => {
            let by = match &observed.cordoned_by {
                Some(operation) => format!("by upkeep operation {operation}"),
                None => "outside upkeep".to_owned(),
            };
            Availability::new(ConditionStatus::False, "Cordoned", format!("the Node is cordoned ({by})"))
        }
        Some(NodeReading::Read(observed)) => match &observed.ready {
            Some(ready) if ready.is_true() => Availability::new(
                ConditionStatus::True,
                "NodeReady",
                "every component reports its version and the Node is Ready",
            ),
            Some(ready) => Availability::new(
                ConditionStatus::False,
                "NodeNotReady",
                format!("the Node's Ready condition is {} ({})", ready.status, ready.reason),
            ),
            None => Availability::new(ConditionStatus::False, "NodeNotReady", "the Node has no Ready condition"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::kubernetes::ReadyCondition;

    fn probed(error: Option<&str>) -> Vec<ComponentState> {
        vec![ComponentState {
            name: "kubelet".parse().expect("valid"),
            observed_version: None,
            desired_version: None,
            observed_at: Some(chrono::Utc::now()),
            probe_error: error.map(str::to_owned),
        }]
    }

    fn node(unschedulable: bool, ready: Option<&str>) -> NodeReading {
        NodeReading::Read(NodeObservation {
            unschedulable,
            cordoned_by: None,
            ready: ready.map(|status| ReadyCondition {
                status: status.to_owned(),
                last_heartbeat: None,
                reason: "KubeletReady".to_owned(),
            }),
            kubelet_version: None,
        })
    }

    #[test]
    fn the_node_decides_once_the_versions_are_known() {
        let cases = [
            (probed(None), None, ConditionStatus::True, "VersionsObserved"),
            (probed(Some("boom")), Some(node(false, Some("True"))), ConditionStatus::False, "VersionProbeFailed"),
            (probed(None), Some(node(false, Some("True"))), ConditionStatus::True, "NodeReady"),
            (probed(None), Some(node(true, Some("True"))), ConditionStatus::False, "Cordoned"),
            (probed(None), Some(node(false, Some("Unknown"))), ConditionStatus::False, "NodeNotReady"),
            (probed(None), Some(node(false, None)), ConditionStatus::False, "NodeNotReady"),
            (probed(None), Some(NodeReading::Failed("down".into())), ConditionStatus::Unknown, "NodeUnreadable"),
        ];
        for (components, reading, status, reason) in cases {
            let decided = availability(&components, reading.as_ref());
            assert_eq!((decided.status, decided.reason), (status, reason), "{reading:?}");
        }
        let unprobed = vec![ComponentState { observed_at: None, ..probed(None).remove(0) }];
        assert_eq!(availability(&unprobed, Some(&node(true, None))).status, ConditionStatus::Unknown);
    }
}
