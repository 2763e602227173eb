//! Finds the workspace's binaries for tests that run real processes.
//!
//! `cargo test --workspace` builds `upkeep-agent` and `upkeep` (their packages
//! have integration tests) with the same features as the tests. The first call
//! in a test process runs `cargo test --workspace --no-run` (a no-op when that
//! build is fresh), so running one test package alone also tests current code.

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

/// A cargo command with `args`, in a plain environment: the test's own
/// (CARGO_PKG_*, LD_LIBRARY_PATH...) would make cargo see a different build and
/// recompile.
fn cargo(args: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let keep = name == "CARGO_HOME" || name == "CARGO_TARGET_DIR" || name == "CARGO_BUILD_JOBS";
        if (name.starts_with("CARGO_") && !keep) || name == "LD_LIBRARY_PATH" || name.starts_with("RUST_TEST") {
            command.env_remove(name.as_ref());
        }
    }
    command
}

fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut command = cargo(&["test", "--workspace", "--no-run", "--quiet"]);
        if profile_dir().file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
}

/// The agent as shipped to nodes (the `dist` profile: built for size), built
/// if needed.
pub fn shipped_agent() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status =
            cargo(&["build", "--profile", "dist", "-p", "upkeep-agent", "--quiet"]).status().expect("cargo runs");
        assert!(status.success(), "building the shipped agent failed");
    });
    let profiles = profile_dir().parent().expect("target directory").to_path_buf();
    let path = profiles.join("dist").join("upkeep-agent");
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The path of a workspace binary, built if needed.
pub fn path(name: &str) -> PathBuf {
    build_once();
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
