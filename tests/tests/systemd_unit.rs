//! The systemd units: `systemd-analyze verify` finds nothing to say about
//! them, and they keep the promises of DESIGN.md §5 (the agent) and §6 (the
//! coordinator service).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A unit file of the repository and the binary its `ExecStart` names.
struct Unit {
    file: &'static str,
    installed_binary: &'static str,
    binary: &'static str,
}

const AGENT: Unit =
    Unit { file: "upkeep-agent.service", installed_binary: "/usr/local/bin/upkeep-agent", binary: "upkeep-agent" };
const COORDINATOR: Unit =
    Unit { file: "upkeep-coordinator.service", installed_binary: "/usr/local/bin/upkeep", binary: "upkeep" };

fn unit_text(unit: &Unit) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(unit.file);
    std::fs::read_to_string(path).expect("unit file")
}

/// What `systemd-analyze verify` says of `text` (CI installs the tool).
fn verify(unit: &Unit, text: &str) -> String {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|output| output.status.success());
    assert!(found, "systemd-analyze is needed (Debian package systemd; .ci/run installs it)");
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join(unit.file);
    let binary = upkeep_tests::binaries::path(unit.binary);
    // Replace the installed path whole (followed by a space), so /usr/local/bin/upkeep never matches inside upkeep-agent.
    let text = text.replace(&format!("{} ", unit.installed_binary), &format!("{} ", binary.display()));
    std::fs::write(&path, text).expect("write unit");
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze runs");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn systemd_analyze_verify_is_silent() {
    for unit in [AGENT, COORDINATOR] {
        let report = verify(&unit, &unit_text(&unit));
        assert_eq!(report.trim(), "", "systemd-analyze verify complained about {}", unit.file);
    }
}

#[test]
fn the_verification_notices_a_broken_unit() {
    for unit in [AGENT, COORDINATOR] {
        let broken = unit_text(&unit).replace("Type=notify", "Typo=notify");
        let report = verify(&unit, &broken);
        assert!(report.contains("Typo"), "a broken {} must be reported: {report:?}", unit.file);
    }
}

#[test]
fn the_units_keep_the_documented_promises() {
    for unit in [AGENT, COORDINATOR] {
        let text = unit_text(&unit);
        for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"] {
            assert!(text.contains(line), "{} misses {line}", unit.file);
        }
        for line in ["ProtectSystem=strict", "NoNewPrivileges=yes", "ExecStartPre="] {
            assert!(text.contains(line), "{} misses {line}", unit.file);
        }
    }
    let agent = unit_text(&AGENT);
    assert!(agent.contains("StateDirectory=upkeep\n"));
    let writable = agent.lines().find(|l| l.starts_with("ReadWritePaths=")).expect("ReadWritePaths");
    for path in ["/usr/bin", "/usr/local/bin", "/opt/bin", "/var/lib/upkeep"] {
        assert!(writable.contains(path), "{path} must stay writable: {writable}");
    }
    let coordinator = unit_text(&COORDINATOR);
    for line in [
        "DynamicUser=yes",
        "StateDirectory=upkeep-coordinator",
        "serve --check-config --config /etc/upkeep/coordinator.toml",
    ] {
        assert!(coordinator.contains(line), "the coordinator's unit misses {line}");
    }
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/coordinator.example.toml"))
            .expect("example config");
    assert!(
        example.contains("state_dir = \"/var/lib/upkeep-coordinator\""),
        "the example keeps its state where the unit lets it write"
    );
}
