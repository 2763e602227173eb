//! The `upkeep-sim` command line: a small run passes its checks and writes its
//! reports; bad arguments are refused with a clear message.

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_upkeep-sim")).args(args).output().expect("upkeep-sim runs")
}

#[test]
fn a_small_run_passes_and_writes_its_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let output = sim(&[
        "run",
        "--nodes",
        "8",
        "--seed",
        "5",
        "--fault-rate",
        "0.5",
        "--faults",
        "corrupt-artifact,agent-crash",
        "--max-failures",
        "100%",
        "--json",
        json.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("seed 5"), "the seed is printed first");
    assert!(stdout.contains("checks: passed"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("json report")).expect("JSON");
    for key in [
        "seed",
        "nodes",
        "counters",
        "wall_s",
        "nodes_per_s",
        "duration_ms",
        "max_unavailable",
        "peak_unavailable",
        "errors",
        "rss_peak_bytes",
        "rss_per_node_bytes",
        "calibration",
        "checks",
    ] {
        assert!(report.get(key).is_some(), "the report has {key}");
    }
    assert_eq!(report["checks"]["passed"], true);
    assert!(std::fs::read_to_string(&html).expect("html report").contains("<svg"));
}

#[test]
fn bad_arguments_are_refused() {
    let shard = sim(&["serve", "--nodes", "4", "--shard", "3/2", "--dir", "/tmp"]);
    assert!(!shard.status.success());
    assert!(String::from_utf8_lossy(&shard.stderr).contains("--shard must be I/N"));
    let fault = sim(&["run", "--faults", "meteor"]);
    assert!(!fault.status.success());
    assert!(String::from_utf8_lossy(&fault.stderr).contains("unknown fault"));
}
