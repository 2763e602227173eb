//! Finds the workspace's binaries for tests that run real processes. The first
//! call in a test process runs `cargo build` for them (a no-op when fresh), so a
//! plain `cargo test --workspace` always tests the current code.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory cargo puts binaries in for this profile (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let profile = if deps.ends_with("deps") { deps.parent().expect("profile directory") } else { deps };
    profile.to_path_buf()
}

fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", "upkeep-agent", "-p", "upkeep-coordinator", "--bins"]);
        if profile_dir().file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
}

/// The path of a workspace binary, built if needed.
pub fn path(name: &str) -> PathBuf {
    build_once();
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
