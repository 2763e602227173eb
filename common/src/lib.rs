//! Shared vocabulary of upkeep: the API types, the version rules, the error
//! envelope and the TLS identity helpers used by the agent, the coordinator and
//! the simulator.
//!
//! # Layout
//!
//! - [`version`]: parsing, display and ordering of Kubernetes versions.
//! - [`rules`]: the incremental and skew rules as pure functions with typed verdicts.
//! - [`ids`]: validated identifiers (node names, operation ids, tokens, digests).
//! - [`image`]: container image references pinned by digest.
//! - [`error`]: the one error envelope and its stable codes.
//! - [`identity`]: client certificate to [`identity::Role`].
//! - [`api`]: the request and response bodies of the agent API.
//!
//! This crate does no I/O and reads no clock: time is always a parameter.

pub mod api;
pub mod error;
pub mod identity;
pub mod ids;
pub mod image;
pub mod rules;
pub mod version;

pub use error::{ErrorBody, ErrorCode, ErrorDetail, ErrorObject};
pub use identity::{Identity, Role};
pub use version::Version;
