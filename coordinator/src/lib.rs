//! upkeep coordinator: the client side of upkeep, and the `upkeep` CLI. Platform
//! control planes can embed it: [`client::AgentClient`] speaks to one agent,
//! [`rollout::Rollout`] rolls a whole fleet.
//!
//! # Layout
//!
//! - [`client`]: typed calls for every agent endpoint over mutual TLS.
//! - [`inventory`]: the fleet file (nodes, roles, zones, TLS files).
//! - [`status`]: `upkeep status`, the fan-out read of every node.
//! - [`pretty_array`]: a JSON array written an element at a time.
//! - [`plan`]: the pure rollout planner.
//! - [`journal`]: the rollout's saved state, kept in the store.
//! - [`control`]: pause and abort of a running rollout.
//! - [`rollout`]: the driver that runs a rollout through the planner.
//! - [`report`]: counters, events, JSON lines and the progress bar.
//! - [`store`]: the key-value store (embedded redb by default) that holds rollouts and updates.
//! - [`certs`]: development CA, node server and role-carrying client certificates.
//! - [`catalog`]: the release catalog (versions, channels, artifacts, images, risks).
//! - [`service`]: `upkeep serve`, the long-running coordinator (its config first).
//! - [`service_client`]: typed calls for every route of `upkeep serve`, and its event stream followed.
//! - [`cluster_cli`]: `upkeep cluster ...`, the command line of that client.
//! - [`toml_problems`]: reading TOML files with every problem located.

pub mod catalog;
pub mod certs;
pub mod client;
pub mod cluster_cli;
pub mod control;
pub mod inventory;
pub mod journal;
pub mod plan;
pub mod pretty_array;
pub mod report;
pub mod rollout;
pub mod service;
pub mod service_client;
pub mod status;
pub mod store;
pub mod toml_problems;
