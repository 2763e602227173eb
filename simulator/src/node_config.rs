//! The agent config of a simulated node: the kubelet with short step
//! timeouts so hung steps end quickly, and on a control-plane node kubeadm's
//! four static pods.

use std::net::SocketAddr;

use upkeep_agent::config::AgentConfig;
use upkeep_common::api::NodeRole;
use upkeep_common::ids::NodeName;

use crate::fleet::{FleetError, KUBELET};

/// The static-pod components of a control-plane node's agent, kubeadm's
/// four, with a settle time of zero so the run stays fast.
fn static_pod_components() -> String {
    crate::static_pods::STATIC_PODS
        .iter()
        .map(|pod| {
            let urls = match *pod {
                "kube-apiserver" => format!(
                    "health_url = \"{}\"\nhealth_ca = \"/etc/kubernetes/pki/ca.crt\"\nversion_url = \"{}\"\n",
                    crate::static_pods::API_SERVER_READYZ,
                    crate::static_pods::API_SERVER_VERSION
                ),
                _ => String::new(),
            };
            format!(
                "[[components]]\nname = \"{pod}\"\nkind = \"static-pod\"\nmanifest = \"{}\"\nsettle_secs = 0\n{urls}",
                crate::static_pods::manifest_path(pod).display()
            )
        })
        .collect()
}

/// The agent config of a simulated node: short step timeouts so hung steps
/// end quickly; a control-plane node also manages its four static pods.
pub fn node_config(name: &NodeName, role: NodeRole, addr: SocketAddr) -> Result<AgentConfig, FleetError> {
    let (role, static_pods) = match role {
        NodeRole::ControlPlane => ("control-plane", static_pod_components()),
        NodeRole::Worker => ("worker", String::new()),
    };
    let text = format!(
        r#"node_name = "{name}"
role = "{role}"
listen = "{addr}"
state_dir = "/var/lib/upkeep"
[tls]
cert = "/sim/tls/node.crt"
key = "/sim/tls/node.key"
client_ca = "/sim/tls/ca.crt"
reload_interval_secs = 0
[[components]]
name = "kubelet"
binary = "{KUBELET}"
kubernetes_skew = true
node_reports_version = true
service = "kubelet.service"
health_url = "http://127.0.0.1:10248/healthz"
{static_pods}[server]
idle_timeout_secs = 30
[probe]
interval_secs = 3600
host_facts_interval_secs = 3600
[artifacts]
file_roots = ["/sim/artifacts"]
[timeouts]
drain_secs = 2
restart_secs = 1
postcheck_secs = 1
"#
    );
    AgentConfig::parse(&text).map_err(|problems| FleetError::Setup(format!("{problems:?}")))
}
