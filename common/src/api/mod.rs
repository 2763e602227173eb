//! Request and response bodies of the agent API (DESIGN.md §3).
//!
//! Field names are part of the contract and fixed by the tests below each type.
//! Request and body fields are snake_case; conditions keep the Kubernetes shape
//! (`type`, `status`, `reason`, `message`, `lastTransitionTime`).

pub mod bounds;
pub mod canonical;
mod etcd;
mod node;
mod operation;
mod request;
mod static_pods;
pub mod timestamp;

pub use etcd::*;
pub use node::*;
pub use operation::*;
pub use request::*;
pub use static_pods::*;
