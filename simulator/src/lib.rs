//! upkeep-sim: the fleet simulator. Thousands of fake nodes, each the real
//! agent server, authorization and upgrade engine over a simulated host, with
//! faults planned from a seed; the real coordinator rolls them over mutual TLS;
//! separate checks judge the result; the report says how fast and how well.
//!
//! # Layout
//!
//! - [`faults`]: the fault plan and latencies, derived from (seed, node index).
//! - [`availability`]: nodes cordoned at once, counted at every cordon and uncordon.
//! - [`host`]: the simulated machine behind a fake node (files, service, probe, Kubernetes).
//! - [`pki`]: the fleet's CA and the coordinator's client certificate.
//! - [`fleet`]: starting the nodes on their own loopback addresses, crashes and outages.
//! - [`node_config`]: the agent config of a simulated node.
//! - [`run`]: one rollout: calibration, the coordinator, the checks.
//! - [`run_config`]: what a run is, and the demo's run.
//! - [`recorder`]: when each node started and finished, and the progress bar.
//! - [`service_driver`]: the rollout driven through the coordinator service's HTTPS API.
//! - [`serve`]: one shard of a large fleet, for a coordinator in another process.
//! - [`checks`]: the end-of-run invariants, apart from the driving code.
//! - [`efficiency`]: the ideal wall time, efficiency and stretch of a rollout.
//! - [`coordinator_cpu`]: the coordinator on threads of its own, and the CPU they spend.
//! - [`report`]: the JSON report and the HTML page.
//! - [`kube_api`]: a fake Kubernetes API server over real HTTPS (Nodes, Pods,
//!   Eviction, `/version`), scriptable for disruption budgets, slow pods and
//!   an API server that is down or slow.
//! - [`fake_apiserver`]: that server on its own, with a kubeconfig for an agent.

pub mod availability;
pub mod catalog;
pub mod checks;
pub mod control_plane;
pub mod coordinator_cpu;
pub mod efficiency;
pub mod fake_apiserver;
pub mod faults;
pub mod fleet;
pub mod host;
pub mod kube_api;
pub mod node_config;
pub mod pki;
pub mod recorder;
pub mod report;
pub mod run;
pub mod run_config;
pub mod serve;
pub mod service_driver;
pub mod static_pods;
