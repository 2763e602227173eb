//! The run's summary for a terminal: a few lines of figures, the control
//! plane's part, the errors by step and code, and the checks.

use super::Report;

/// Prints the summary of `report` on standard output.
pub fn print_summary(report: &Report) {
    let c = &report.counters;
    println!(
        "seed {}: {} nodes in {:.2} s ({:.0} nodes/s): patched {} skipped {} pending {} error {}",
        report.seed, report.nodes, report.wall_s, report.nodes_per_s, c.patched, c.skipped, c.pending, c.error
    );
    println!(
        "per node p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms; unavailable peak {} (limit {}); bare protocol {:.2} s, overhead {:.2}x; {:.1} requests per node",
        report.duration_ms.p50,
        report.duration_ms.p95,
        report.duration_ms.p99,
        report.peak_unavailable,
        report.max_unavailable,
        report.calibration.bare_protocol_s,
        report.calibration.overhead_ratio,
        report.requests_per_node
    );
    println!(
        "efficiency {:.2} (ideal {:.2} s); stretch p50 {:.2}, p99 {:.2}; coordinator CPU {:.2} ms per node",
        report.efficiency,
        report.ideal_wall_s,
        report.stretch.p50,
        report.stretch.p99,
        report.coordinator_cpu_ms_per_node
    );
    println!(
        "memory: peak RSS {:.1} MiB, {:.1} KiB per node",
        report.rss_peak_bytes as f64 / 1048576.0,
        report.rss_per_node_bytes as f64 / 1024.0
    );
    if let Some(service) = &report.service {
        let nodes = report.nodes.max(1) as f64;
        println!(
            "service: {} store commits ({:.2} per node), {:.1} keys written per node; GET cluster p99 {:.1} ms; \
             event lag p50 {:.0} ms, p99 {:.0} ms; {} restart(s){}",
            service.store_commits,
            service.store_commits as f64 / nodes,
            service.store_writes as f64 / nodes,
            service.cluster_get_ms.p99,
            service.event_lag_ms.p50,
            service.event_lag_ms.p99,
            service.restarts,
            service.resumed_after_ms.map(|ms| format!(", moving again {ms:.0} ms after the kill")).unwrap_or_default()
        );
        let tasks: Vec<String> =
            service.tasks_ms.iter().map(|(task, ms)| format!("{task} {:.2} s", ms / 1000.0)).collect();
        println!("service tasks: {}", tasks.join(", "));
    }
    let control_plane = &report.control_plane;
    println!(
        "control plane: static pods upgraded on {}, rolled back on {}, as started on {} node(s); \
         {} kubelet restart(s) {} the oldest kube-apiserver ({})",
        control_plane.static_pods_upgraded,
        control_plane.static_pods_rolled_back,
        control_plane.static_pods_as_started,
        control_plane.kubelet_restarts_checked,
        if control_plane.skew_held { "never newer than" } else { "NEWER than" },
        control_plane.oldest_api_server.as_ref().map_or("none".to_owned(), |v| format!("{v} at the end"))
    );
    for group in &report.errors {
        println!("  error {} {}: {} node(s)", group.step, group.code, group.count);
    }
    println!("checks: {}", if report.checks.passed { "passed" } else { "FAILED" });
    for violation in &report.checks.violations {
        println!("  {}: {}", violation.check, violation.message);
    }
}
