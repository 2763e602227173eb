//! How long each upgrade step took, as one Prometheus histogram per step
//! (label `step`). The counts of every step sit in one table, allocated at the
//! first observation: a prometheus-client histogram per step would hold its own
//! bucket bounds, lock and label, about 3 KB an agent once every step has run,
//! which a simulator running thousands of agents in one process pays for each.

use std::iter::once;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use upkeep_common::api::StepName;

/// Bucket upper bounds in seconds, from a zero-latency simulated step to a long drain.
pub const STEP_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

/// The metric's name under the registry's prefix.
const NAME: &str = "step_duration_seconds";
/// Its help text, ending in a period as the registry ends the help of what it registers.
const HELP: &str = "How long upgrade steps took.";

/// One step's observations: the count in each bucket (the last is `+Inf`),
/// not cumulated; the encoder cumulates them. A bucket's count is 32 bits (an
/// agent would need a step a second for 136 years to fill one) and saturates.
#[derive(Debug, Default, Clone, Copy)]
struct StepCounts {
    sum: f64,
    count: u64,
    buckets: [u32; STEP_BUCKETS.len() + 1],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

/// Every step's durations. Shared with the registry built for a scrape.
#[derive(Debug, Default, Clone)]
pub struct StepDurations {
    table: Arc<Mutex<Option<Box<[StepCounts; StepName::UPGRADE.len()]>>>>,
}

/// The step's row in the table: its place in [`StepName::UPGRADE`]. Spelled
/// out so that a new step fails to compile until it has a row.
fn row_of(step: StepName) -> usize {
    match step {
        StepName::PreCheck => 0,
        StepName::Stage => 1,
        StepName::Cordon => 2,
        StepName::Drain => 3,
        StepName::Swap => 4,
        StepName::Restart => 5,
        StepName::PostCheck => 6,
        StepName::Uncordon => 7,
    }
}

impl StepDurations {
    /// Records that `step` took `seconds`.
    pub fn observe(&self, step: StepName, seconds: f64) {
        let row = row_of(step);
        let bucket = STEP_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(STEP_BUCKETS.len());
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = &mut table.get_or_insert_with(Box::default)[row];
        counts.sum += seconds;
        counts.count += 1;
        counts.buckets[bucket] = counts.buckets[bucket].saturating_add(1);
    }

    /// A copy of the table, when anything was observed.
    fn snapshot(&self) -> Option<[StepCounts; StepName::UPGRADE.len()]> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner).as_deref().copied()
    }
}

impl Collector for StepDurations {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Like an empty family, nothing at all is written before the first observation.
        let Some(table) = self.snapshot() else { return Ok(()) };
        let mut metric = encoder.encode_descriptor(NAME, HELP, None, MetricType::Histogram)?;
        for step in StepName::UPGRADE {
            let counts = table[row_of(step)];
            if counts.count == 0 {
                continue;
            }
            let buckets: Vec<(f64, u64)> =
                STEP_BUCKETS.iter().copied().chain(once(f64::MAX)).zip(counts.buckets.map(u64::from)).collect();
            let labels = StepLabels { step: format!("{step:?}") };
            metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(counts.sum, counts.count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    fn page(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn the_page_reads_as_prometheus_clients_own_histograms_would() {
        let durations = StepDurations::default();
        let family: Family<StepLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(STEP_BUCKETS.iter().copied()));
        let observations = [
            (StepName::Swap, 0.0),
            (StepName::Swap, 0.001),
            (StepName::Swap, 0.0011),
            (StepName::Drain, 42.0),
            (StepName::Drain, 601.5),
            (StepName::PreCheck, 0.25),
        ];
        for (step, seconds) in observations {
            durations.observe(step, seconds);
            family.get_or_create(&StepLabels { step: format!("{step:?}") }).observe(seconds);
        }
        let mut ours = Registry::with_prefix("upkeep_agent");
        ours.register_collector(Box::new(durations));
        let mut theirs = Registry::with_prefix("upkeep_agent");
        theirs.register(NAME, HELP.trim_end_matches('.'), family);
        // The family lists its steps in hash order; ours in step order: compare the lines.
        let sorted = |text: String| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        let (ours, theirs) = (page(&ours), page(&theirs));
        assert_eq!(sorted(ours.clone()), sorted(theirs), "{ours}");
        assert!(ours.contains("upkeep_agent_step_duration_seconds_bucket{le=\"0.001\",step=\"Swap\"} 2"), "{ours}");
        assert!(ours.contains("upkeep_agent_step_duration_seconds_count{step=\"Drain\"} 2"), "{ours}");
    }

    #[test]
    fn every_step_has_its_own_row_in_upgrade_order() {
        let rows: Vec<usize> = StepName::UPGRADE.into_iter().map(row_of).collect();
        assert_eq!(rows, (0..StepName::UPGRADE.len()).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_is_listed_before_a_step_has_run() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StepDurations::default()));
        assert_eq!(page(&registry), "# EOF\n");
    }
}
