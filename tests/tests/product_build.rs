//! The product binaries carry no test hook: the crash points that kill the
//! agent for the durability tests live in a binary of the tests package, and
//! no feature of the agent exists that a workspace build could turn on.

use std::process::Command;

use upkeep_tests::binaries;

/// The features cargo resolves for `package` when the whole workspace is built,
/// as a packager's `cargo build --release` at the root builds it.
fn resolved_features(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked", "--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let id = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == package)
        .and_then(|p| p["id"].as_str())
        .expect("the package is in the workspace")
        .to_owned();
    let node = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .find(|node| node["id"] == id.as_str())
        .expect("the package is resolved");
    node["features"].as_array().expect("features").iter().filter_map(|f| f.as_str().map(str::to_owned)).collect()
}

#[test]
fn a_workspace_build_enables_no_feature_of_the_agent() {
    assert_eq!(resolved_features("upkeep-agent"), Vec::<String>::new());
}

#[test]
fn only_the_tests_agent_binary_can_be_killed_at_a_crash_point() {
    let marker = b"UPKEEP_CRASH_AT";
    let contains = |name: &str| {
        let bytes = std::fs::read(binaries::path(name)).expect("binary readable");
        bytes.windows(marker.len()).any(|window| window == marker)
    };
    assert!(contains("upkeep-agent-crashable"), "the check must be able to see the hook");
    assert!(!contains("upkeep-agent"), "the product binary must not read UPKEEP_CRASH_AT");
}
