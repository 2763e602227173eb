//! Criterion benchmarks of upkeep; each file under `benches/` says how to run it.

use std::time::Duration;

/// The median, the least and the most of `samples`, for a bench's printout.
pub fn duration_summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let (Some(least), Some(most)) = (samples.first(), samples.last()) else { return "no rounds".to_owned() };
    let median = samples[samples.len() / 2];
    format!("median {median:?}, min {least:?}, max {most:?} over {} rounds", samples.len())
}
