//! `upkeep serve`: the long-running coordinator that platforms call (DESIGN.md §6).
//!
//! - [`config`]: the service's config file.
//! - [`model`]: clusters' specs, updates, tasks, history and events.
//! - [`records`]: where those live in the store.
//! - [`log`]: a running update's record and events, written in batches.
//! - [`nodes`]: what the service last saw of each node.
//! - [`view`]: the cluster as the API answers it.
//! - [`cluster`]: one managed cluster at run time.
//! - [`workflow`]: an update's tasks, PreCheck to PostCheck.
//! - [`checks`]: PreCheck and PostCheck.
//! - [`sink`]: the rollout's events as the update's.

pub mod checks;
pub mod cluster;
pub mod config;
pub mod log;
pub mod model;
pub mod nodes;
pub mod records;
pub mod sink;
pub mod view;
pub mod workflow;
