//! The body of the agent's `GET /v1/static-pods`: whether each static pod's
//! container runs its manifest's image, Ready, and answers its health and
//! version URLs, as the node sees it.

use serde::{Deserialize, Serialize};

use crate::ids::ComponentName;

/// One static pod's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPodHealth {
    /// The component.
    pub component: ComponentName,
    /// The image its manifest names, when the manifest could be read.
    pub image: Option<String>,
    /// Whether its container runs that image, Ready, and its URLs answer.
    pub healthy: bool,
    /// Why not, or what was checked.
    pub message: String,
}

/// Every static pod of the node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPodList {
    /// One entry per static-pod component, in config order.
    pub static_pods: Vec<StaticPodHealth>,
}

impl StaticPodList {
    /// Whether every static pod is healthy.
    pub fn all_healthy(&self) -> bool {
        self.static_pods.iter().all(|pod| pod.healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_contract() {
        let list = StaticPodList {
            static_pods: vec![StaticPodHealth {
                component: "etcd".parse().expect("valid"),
                image: Some("registry.k8s.io/etcd:3.5.12-0".to_owned()),
                healthy: false,
                message: "not Ready".to_owned(),
            }],
        };
        let json = serde_json::to_value(&list).expect("serializes");
        let pod = json["static_pods"][0].as_object().expect("object");
        let mut keys: Vec<&str> = pod.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["component", "healthy", "image", "message"]);
        assert!(!list.all_healthy());
        assert!(StaticPodList::default().all_healthy(), "no static pods: nothing unhealthy");
    }
}
