//! The report as one self-contained HTML page: an inline SVG chart of the
//! rollout over time (patched, in flight, failed) and the tables. No script,
//! no external resource: it opens in a browser without a network.

use std::fmt::Write;

use crate::report::{Report, TimelinePoint};

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn polyline(points: &[TimelinePoint], total: usize, value: impl Fn(&TimelinePoint) -> usize, color: &str) -> String {
    let end = points.last().map_or(1, |p| p.t_ms.max(1)) as f64;
    let top = total.max(1) as f64;
    let coordinates: Vec<String> = points
        .iter()
        .map(|p| {
            let x = MARGIN + (p.t_ms as f64 / end) * (WIDTH - 2.0 * MARGIN);
            let y = HEIGHT - MARGIN - (value(p) as f64 / top) * (HEIGHT - 2.0 * MARGIN);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, coordinates.join(" "))
}

fn chart(report: &Report) -> String {
    let points = &report.timeline;
    let end_s = points.last().map_or(0.0, |p| p.t_ms as f64 / 1000.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="rollout over time">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/><line x1="{MARGIN}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{b}" stroke="#999"/><text x="{MARGIN}" y="{lt}" font-size="12">0 s</text><text x="{r}" y="{lt}" font-size="12" text-anchor="end">{end_s:.1} s</text><text x="4" y="{MARGIN}" font-size="12">{n}</text>"##,
        b = HEIGHT - MARGIN,
        r = WIDTH - MARGIN,
        lt = HEIGHT - MARGIN + 16.0,
        n = report.nodes,
    );
    svg.push_str(&polyline(points, report.nodes, |p| p.patched, "#2a7"));
    svg.push_str(&polyline(points, report.nodes, |p| p.in_flight, "#37c"));
    svg.push_str(&polyline(points, report.nodes, |p| p.failed, "#c33"));
    svg.push_str("</svg>");
    svg
}

fn row(cells: &[String]) -> String {
    format!("<tr>{}</tr>", cells.iter().map(|c| format!("<td>{}</td>", escape(c))).collect::<String>())
}

/// The page.
pub fn render(report: &Report) -> String {
    let c = &report.counters;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>upkeep-sim: {} nodes, seed {}</h1><p class=\"{}\">checks {}</p>",
        report.nodes,
        report.seed,
        if report.checks.passed { "ok" } else { "bad" },
        if report.checks.passed { "passed" } else { "FAILED" }
    );
    body.push_str(&chart(report));
    body.push_str("<p><span style=\"color:#2a7\">&#9632; patched or skipped</span> <span style=\"color:#37c\">&#9632; in flight</span> <span style=\"color:#c33\">&#9632; failed</span></p>");
    body.push_str("<h2>Outcome</h2><table>");
    for (name, value) in [
        ("patched", c.patched.to_string()),
        ("skipped", c.skipped.to_string()),
        ("pending", c.pending.to_string()),
        ("error", c.error.to_string()),
        ("wall time", format!("{:.2} s", report.wall_s)),
        ("nodes per second", format!("{:.1}", report.nodes_per_s)),
        (
            "per-node duration p50 / p95 / p99",
            format!("{:.0} / {:.0} / {:.0} ms", report.duration_ms.p50, report.duration_ms.p95, report.duration_ms.p99),
        ),
        ("unavailable limit / peak", format!("{} / {}", report.max_unavailable, report.peak_unavailable)),
        (
            "bare protocol / overhead",
            format!("{:.2} s / {:.2}x", report.calibration.bare_protocol_s, report.calibration.overhead_ratio),
        ),
        ("requests per node", format!("{:.1}", report.requests_per_node)),
        ("coordinator CPU per node", format!("{:.2} ms", report.coordinator_cpu_ms_per_node)),
        ("ideal wall time / efficiency", format!("{:.2} s / {:.2}", report.ideal_wall_s, report.efficiency)),
        ("stretch p50 / p99", format!("{:.2} / {:.2}", report.stretch.p50, report.stretch.p99)),
        (
            "peak RSS / per node",
            format!(
                "{:.1} MiB / {:.1} KiB",
                report.rss_peak_bytes as f64 / 1048576.0,
                report.rss_per_node_bytes as f64 / 1024.0
            ),
        ),
    ] {
        body.push_str(&row(&[name.to_owned(), value]));
    }
    let cp = &report.control_plane;
    body.push_str("</table><h2>Control plane</h2><table>");
    for (name, value) in [
        ("static pods upgraded (nodes)", cp.static_pods_upgraded.to_string()),
        ("static pods rolled back (nodes)", cp.static_pods_rolled_back.to_string()),
        ("static pods as started (nodes)", cp.static_pods_as_started.to_string()),
        ("kubelet restarts checked against the oldest kube-apiserver", cp.kubelet_restarts_checked.to_string()),
        ("no kubelet newer than the oldest kube-apiserver", if cp.skew_held { "held" } else { "BROKEN" }.to_owned()),
        ("oldest kube-apiserver at the end", cp.oldest_api_server.as_ref().map_or("-".to_owned(), |v| v.to_string())),
    ] {
        body.push_str(&row(&[name.to_owned(), value]));
    }
    body.push_str("</table><h2>Errors by step and code</h2><table><tr><th>step</th><th>code</th><th>nodes</th></tr>");
    for group in &report.errors {
        body.push_str(&row(&[group.step.clone(), group.code.clone(), group.count.to_string()]));
    }
    body.push_str("</table><h2>Faults planned</h2><table>");
    for (kind, count) in &report.faults {
        body.push_str(&row(&[kind.clone(), count.to_string()]));
    }
    body.push_str("</table><h2>Checks</h2><table>");
    if report.checks.violations.is_empty() {
        body.push_str(&row(&["all checks held".to_owned()]));
    }
    for violation in &report.checks.violations {
        body.push_str(&row(&[violation.check.to_owned(), violation.message.clone()]));
    }
    body.push_str("</table>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>upkeep-sim report, seed {}</title><style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}.ok{{color:#2a7}}.bad{{color:#c33;font-weight:bold}}</style></head><body>{body}</body></html>\n",
        report.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Calibration, ChecksReport, ControlPlaneReport, Percentiles};

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let report = Report {
            driver: "cli",
            service: None,
            seed: 1,
            nodes: 2,
            counters: Default::default(),
            wall_s: 1.0,
            nodes_per_s: 2.0,
            duration_ms: Percentiles::default(),
            max_unavailable: 1,
            peak_unavailable: 1,
            errors: vec![crate::report::ErrorGroup {
                step: "<Stage>".into(),
                code: "checksum_mismatch".into(),
                count: 1,
            }],
            rss_peak_bytes: 0,
            rss_per_node_bytes: 0,
            calibration: Calibration::default(),
            requests_per_node: 4.0,
            coordinator_cpu_ms_per_node: 1.0,
            ideal_wall_s: 0.5,
            efficiency: 0.5,
            stretch: Percentiles::default(),
            checks: ChecksReport { passed: true, violations: vec![] },
            control_plane: ControlPlaneReport {
                static_pods_upgraded: 3,
                static_pods_rolled_back: 1,
                static_pods_as_started: 0,
                kubelet_restarts_checked: 1000,
                skew_held: true,
                oldest_api_server: Some("v1.30.3".parse().expect("valid")),
            },
            faults: Default::default(),
            timeline: vec![
                TimelinePoint { t_ms: 0, patched: 0, in_flight: 1, failed: 0 },
                TimelinePoint { t_ms: 10, patched: 2, in_flight: 0, failed: 0 },
            ],
            outcomes: Default::default(),
        };
        let page = render(&report);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<svg") && page.contains("<polyline"));
        assert!(page.contains("&lt;Stage&gt;"));
        assert!(page.contains("<h2>Control plane</h2>"));
        assert!(page.contains("<td>static pods rolled back (nodes)</td><td>1</td>"), "{page}");
        assert!(
            !page.contains("http://")
                || page.matches("http://").all(|_| page.contains("xmlns=\"http://www.w3.org/2000/svg\""))
        );
        assert!(!page.contains("<script") && !page.contains("src="));
    }
}
