//! upkeep agent library.
