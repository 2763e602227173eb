//! upkeep coordinator library.
