//! upkeep coordinator: the client side of upkeep, and the `upkeep` CLI.
//!
//! # Layout
//!
//! - [`certs`]: development CA, node server certificates and role-carrying
//!   client certificates (`upkeep certs`).

pub mod certs;
