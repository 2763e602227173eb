//! The systemd unit: `systemd-analyze verify` finds nothing to say about it
//! (where that tool exists), and it keeps the promises of DESIGN.md §5.

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/upkeep-agent.service");
    std::fs::read_to_string(path).expect("unit file")
}

fn verify(unit: &str) -> Option<String> {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|output| output.status.success());
    if !found {
        eprintln!("systemd-analyze not found: skipping verification");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("upkeep-agent.service");
    let agent = upkeep_tests::binaries::path("upkeep-agent");
    std::fs::write(&path, unit.replace("/usr/local/bin/upkeep-agent", &agent.display().to_string()))
        .expect("write unit");
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze runs");
    Some(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn systemd_analyze_verify_is_silent() {
    if let Some(report) = verify(&unit_text()) {
        assert_eq!(report.trim(), "", "systemd-analyze verify complained");
    }
}

#[test]
fn the_verification_notices_a_broken_unit() {
    let broken = unit_text().replace("Type=notify", "Typo=notify");
    if let Some(report) = verify(&broken) {
        assert!(report.contains("Typo"), "a broken unit must be reported: {report:?}");
    }
}

#[test]
fn the_unit_keeps_the_documented_promises() {
    let unit = unit_text();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=upkeep",
    ] {
        assert!(unit.contains(line), "missing {line}");
    }
    let writable = unit.lines().find(|l| l.starts_with("ReadWritePaths=")).expect("ReadWritePaths");
    for path in ["/usr/bin", "/usr/local/bin", "/opt/bin", "/var/lib/upkeep"] {
        assert!(writable.contains(path), "{path} must stay writable: {writable}");
    }
}
