//! Shared helpers of the end-to-end tests and benches: a test PKI, fake
//! components, a real `upkeep-agent` process, and a small mutual-TLS client.
//!
//! # Layout
//!
//! - [`pki`]: a CA with node and client certificates on disk (plus a foreign CA
//!   and an expired client).
//! - [`fake_kubelet`]: shell scripts that print a kubelet version, and a health endpoint.
//! - [`fleet`]: several agents on 127.0.0.x with an inventory for the `upkeep` CLI.
//! - [`binaries`]: finds (building once if needed) the workspace's binaries.
//! - [`listening`]: starts a server process and waits until it says where it listens.
//! - [`agent_process`]: starts `upkeep-agent` with a config and waits until it listens.
//! - [`service_process`]: starts `upkeep serve` over a test fleet, with its config and catalog.
//! - [`client`]: an HTTPS client over rustls for requests and handshake checks.
//! - [`openapi_check`]: replies checked against an OpenAPI document.
//! - [`etcd`]: a real etcd with client-certificate authentication, killed on drop.
//! - [`curl`]: the real `curl` and `openssl s_client` against an agent.
//! - [`in_process`]: the real agent server inside the test or bench process.
//! - [`static_pod_node`]: a control-plane node's static pods, run by a stand-in kubelet.
//! - [`upgrades`]: artifacts, request bodies and waiting for operations.
//! - [`scripted_agent`]: a TLS server playing one agent that misbehaves in one scripted way.

pub mod agent_process;
pub mod binaries;
pub mod client;
pub mod curl;
pub mod etcd;
pub mod fake_kubelet;
pub mod fleet;
pub mod in_process;
pub mod listening;
pub mod openapi_check;
pub mod pki;
pub mod scripted_agent;
pub mod service_process;
pub mod static_pod_node;
pub mod upgrades;
