//! A fleet spread over two `upkeep-sim serve` processes, rolled by one `upkeep`
//! given both shards' inventories, run as the README shows: from one working
//! directory, with a relative `--dir`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use upkeep_tests::binaries;

struct Shard(Child);

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(working_dir: &std::path::Path, shard: &str) -> Shard {
    let mut child = Command::new(binaries::path("upkeep-sim"))
        .current_dir(working_dir)
        .args(["serve", "--nodes", "12", "--control-planes", "1", "--shard", shard, "--dir", "fleet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("upkeep-sim serve starts");
    let stdout = child.stdout.take().expect("piped");
    let line = BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.contains("serving shard"));
    assert!(line.is_some(), "shard {shard} never said it was serving");
    Shard(child)
}

#[test]
fn one_coordinator_rolls_a_fleet_spread_over_two_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = serve(dir.path(), "0/2");
    let _second = serve(dir.path(), "1/2");
    let output = Command::new(binaries::path("upkeep"))
        .current_dir(dir.path())
        .args(["rollout", "--inventory", "fleet/inventory-0.toml", "--inventory", "fleet/inventory-1.toml"])
        .args(["--to", "v1.30.3", "--artifacts", "fleet/artifacts.toml"])
        .args(["--max-unavailable", "3", "--output", "json", "--poll-ms", "20", "--journal", "journal.redb"])
        .output()
        .expect("upkeep runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        summary["counters"],
        serde_json::json!({"patched": 12, "skipped": 0, "pending": 0, "error": 0}),
        "{stdout}"
    );
    assert!(output.status.success());
}
