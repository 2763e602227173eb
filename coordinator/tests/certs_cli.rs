//! `upkeep certs`: a CA, a node certificate and a client certificate on disk,
//! checked with the real openssl.

use std::process::Command;

fn upkeep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_upkeep")).args(args).output().expect("upkeep runs")
}

fn openssl_text(path: &std::path::Path) -> String {
    let output =
        Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(path).output().expect("openssl runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn creates_a_ca_a_node_and_a_client_that_openssl_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    assert!(upkeep(&["certs", "ca", "--dir", d]).status.success());
    assert!(
        upkeep(&["certs", "server", "--dir", d, "--name", "worker-1", "--san", "127.0.0.2", "--san", "worker-1.local"])
            .status
            .success()
    );
    assert!(upkeep(&["certs", "client", "--dir", d, "--name", "ops", "--role", "operator"]).status.success());

    let server = openssl_text(&dir.path().join("worker-1.crt"));
    assert!(server.contains("IP Address:127.0.0.2"), "{server}");
    assert!(server.contains("DNS:worker-1.local"), "{server}");
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    let client = openssl_text(&dir.path().join("ops.crt"));
    assert!(client.contains("O=upkeep:operator") || client.contains("O = upkeep:operator"), "{client}");
    assert!(client.contains("TLS Web Client Authentication"), "{client}");

    for name in ["worker-1.crt", "ops.crt"] {
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.path().join("ca.crt"))
            .arg(dir.path().join(name))
            .output()
            .expect("openssl runs");
        assert!(verify.status.success(), "{name}: {}", String::from_utf8_lossy(&verify.stdout));
    }
}

#[test]
fn refuses_to_overwrite_a_ca_and_names_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    assert!(upkeep(&["certs", "ca", "--dir", d]).status.success());
    let again = upkeep(&["certs", "ca", "--dir", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = upkeep(&["certs", "server", "--dir", d, "--name", "n", "--san", "not a name"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an IP address or DNS name"));
    let no_ca = upkeep(&["certs", "client", "--dir", "/nonexistent", "--name", "x", "--role", "reader"]);
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("/nonexistent/ca.crt"));
}
