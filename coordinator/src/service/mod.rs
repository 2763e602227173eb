//! `upkeep serve`: the long-running coordinator that platforms call (DESIGN.md §6).
//!
//! - [`app`]: the service as a whole: store, clusters, metrics.
//! - [`api`]: the HTTPS API's routes and roles; [`handlers`]: what each does.
//! - [`admission`]: whether an upgrade request may start an update.
//! - [`rollback`]: whether an ended update may be rolled back.
//! - [`starting`]: starting an upgrade or a rollback, once.
//! - [`events`]: an update's event stream.
//! - [`metrics`]: Prometheus metrics.
//! - [`config`]: the service's config file.
//! - [`run`]: `upkeep serve` until a signal.
//! - [`model`]: clusters' specs, updates, tasks, history and events.
//! - [`records`]: where those live in the store.
//! - [`log`]: a running update's record and events, written in batches.
//! - [`nodes`]: what the service last saw of each node.
//! - [`view`]: the cluster as the API answers it.
//! - [`cluster`]: one managed cluster at run time.
//! - [`workflow`]: an update's tasks, PreCheck to PostCheck.
//! - [`checks`]: PreCheck and PostCheck.
//! - [`sink`]: the rollout's events as the update's.

pub mod admission;
pub mod api;
pub mod app;
pub mod checks;
pub mod cluster;
pub mod config;
pub mod events;
pub mod handlers;
pub mod log;
pub mod metrics;
pub mod model;
pub mod nodes;
pub mod records;
pub mod rollback;
pub mod run;
pub mod sink;
pub mod starting;
pub mod view;
pub mod workflow;
