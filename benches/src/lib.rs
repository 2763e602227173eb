//! Criterion benchmarks of upkeep; each file under `benches/` says how to run it.
