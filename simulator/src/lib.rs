//! upkeep-sim: the fleet simulator. For now it holds the fake Kubernetes API
//! server that the fleet's nodes and the end-to-end tests drain against.
//!
//! # Layout
//!
//! - [`kube_api`]: a fake Kubernetes API server over real HTTPS (Nodes, Pods,
//!   Eviction, `/version`), scriptable for disruption budgets, slow pods and
//!   an API server that is down or slow.

pub mod kube_api;
