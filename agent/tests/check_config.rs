//! `upkeep-agent --check-config`: exit 0 for a valid file, otherwise every
//! problem printed by key and a non-zero exit.

use std::process::Command;

fn check(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_upkeep-agent"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("upkeep-agent runs")
}

#[test]
fn the_example_config_is_valid() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/agent.example.toml"))
        .expect("example config");
    let output = check(&example);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration is valid"));
}

#[test]
fn every_problem_is_printed_with_its_key() {
    let output = check("node_name = \"Bad Name\"\nrole = \"boss\"\nlisten = \"nowhere\"\ncolour = \"blue\"\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in
        ["node_name:", "role: must be", "listen:", "colour: unknown key", "state_dir: is required", "tls: is required"]
    {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_upkeep-agent"))
        .args(["--check-config", "--config", "/nonexistent/agent.toml"])
        .output()
        .expect("upkeep-agent runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/agent.toml"));
}
