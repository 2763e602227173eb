//! `upkeep serve`: the long-running coordinator that platforms call (DESIGN.md §6).

pub mod config;
