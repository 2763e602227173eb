//! Unavailability counted at every transition, as the simulated hosts see it:
//! each cordon and uncordon of a Node reports here, so the peak number of
//! nodes cordoned at once is exact, never a sample that could miss a moment.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The nodes cordoned now, the most ever cordoned at once, and how many
/// changes were seen.
#[derive(Debug, Default)]
pub struct Unavailability {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cordoned: BTreeSet<usize>,
    peak: usize,
    transitions: u64,
}

impl Unavailability {
    /// Records that node `index` is now cordoned or not; repeating the same
    /// state is not a transition.
    pub fn set_cordoned(&self, index: usize, cordoned: bool) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = if cordoned { state.cordoned.insert(index) } else { state.cordoned.remove(&index) };
        if changed {
            state.transitions += 1;
            state.peak = state.peak.max(state.cordoned.len());
        }
    }

    /// The most nodes that were cordoned at the same time.
    pub fn peak(&self) -> usize {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).peak
    }

    /// How many cordons and uncordons changed a node's state.
    pub fn transitions(&self) -> u64 {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).transitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_most_cordoned_at_any_one_transition() {
        let unavailability = Unavailability::default();
        unavailability.set_cordoned(1, true);
        unavailability.set_cordoned(1, true);
        unavailability.set_cordoned(2, true);
        unavailability.set_cordoned(1, false);
        unavailability.set_cordoned(3, true);
        unavailability.set_cordoned(2, false);
        unavailability.set_cordoned(3, false);
        unavailability.set_cordoned(3, false);
        assert_eq!(unavailability.peak(), 2, "1 and 2, then 2 and 3, never three at once");
        assert_eq!(unavailability.transitions(), 6, "repeats are not transitions");
    }
}
