//! How close a rollout came to the fastest the fleet allows, as pure
//! arithmetic over what was planned and what was measured.
//!
//! - The *ideal* wall time is the larger of: the control-plane nodes' planned
//!   durations one after another, then the workers' planned durations spread
//!   over the slots (`max_unavailable`); and the bare protocol's time measured
//!   in the same run (on one machine the CPU, not the slots, can be the limit).
//! - The *efficiency* is the ideal divided by the measured wall time.
//! - A node's *stretch* is its measured duration over its planned one (the sum
//!   of its steps' latencies); nodes with nothing planned have none.

use crate::report::Percentiles;

/// One node's planned and measured durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeTiming {
    /// Whether it is a control-plane node (those go one at a time).
    pub control_plane: bool,
    /// The sum of its steps' planned latencies, in milliseconds.
    pub planned_ms: f64,
    /// From its start to its end as the coordinator reported them, if it ran.
    pub measured_ms: Option<f64>,
}

/// The ideal wall time in seconds.
pub fn ideal_wall_s(nodes: &[NodeTiming], slots: usize, bare_protocol_s: f64) -> f64 {
    let control_plane_ms: f64 = nodes.iter().filter(|n| n.control_plane).map(|n| n.planned_ms).sum();
    let workers_ms: f64 = nodes.iter().filter(|n| !n.control_plane).map(|n| n.planned_ms).sum();
    let longest_worker_ms = nodes.iter().filter(|n| !n.control_plane).map(|n| n.planned_ms).fold(0.0, f64::max);
    let spread_ms = (workers_ms / slots.max(1) as f64).max(longest_worker_ms);
    ((control_plane_ms + spread_ms) / 1000.0).max(bare_protocol_s)
}

/// The ideal wall time over the measured one (0 when nothing was measured).
pub fn efficiency(ideal_s: f64, measured_s: f64) -> f64 {
    if measured_s > 0.0 { ideal_s / measured_s } else { 0.0 }
}

/// The percentiles of each node's measured over planned duration, over the
/// nodes that ran and had a planned duration.
pub fn stretch(nodes: &[NodeTiming]) -> Percentiles {
    Percentiles::of(
        nodes
            .iter()
            .filter(|n| n.planned_ms > 0.0)
            .filter_map(|n| n.measured_ms.map(|measured| measured / n.planned_ms))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(control_plane: bool, planned_ms: f64, measured_ms: f64) -> NodeTiming {
        NodeTiming { control_plane, planned_ms, measured_ms: Some(measured_ms) }
    }

    #[test]
    fn the_ideal_runs_the_control_plane_in_turn_then_fills_the_slots() {
        // Two control-plane nodes of 1 s each, then eight 1 s workers over four slots: 2 s + 2 s.
        let mut nodes = vec![node(true, 1000.0, 1000.0), node(true, 1000.0, 1000.0)];
        nodes.extend((0..8).map(|_| node(false, 1000.0, 1000.0)));
        assert_eq!(ideal_wall_s(&nodes, 4, 0.5), 4.0);
        assert_eq!(ideal_wall_s(&nodes, 4, 9.0), 9.0, "the bare protocol bounds it from below");
        assert_eq!(ideal_wall_s(&nodes, 100, 0.0), 3.0, "no faster than the longest worker");
        assert_eq!(efficiency(4.0, 5.0), 0.8);
        assert_eq!(efficiency(4.0, 0.0), 0.0);
    }

    #[test]
    fn stretch_is_measured_over_planned_for_nodes_that_ran() {
        let nodes = [
            node(false, 100.0, 110.0),
            node(false, 100.0, 300.0),
            NodeTiming { control_plane: false, planned_ms: 100.0, measured_ms: None },
            node(false, 0.0, 50.0),
        ];
        let stretch = stretch(&nodes);
        assert_eq!((stretch.p50, stretch.p99), (3.0, 3.0));
        assert_eq!(super::stretch(&[node(false, 200.0, 220.0)]).p50, 1.1);
    }
}
