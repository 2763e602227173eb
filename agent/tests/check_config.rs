//! `upkeep-agent --check-config`: exit 0 when the file is valid and everything
//! it names loads (TLS files, kubeconfig, component binaries, artifact CA and
//! file roots); otherwise every problem printed by key and exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

/// A host with every file a valid config names: a CA, the node's certificate
/// and key, a second unrelated key, a kubeconfig, a kubelet binary and an
/// artifact directory.
struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let node_key = KeyPair::generate().expect("node key");
        let node = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("node params")
            .signed_by(&node_key, &issuer)
            .expect("node certificate");
        let other_key = KeyPair::generate().expect("another key");
        let files = Files { dir };
        files.write("ca.crt", &ca.pem());
        files.write("node.crt", &node.pem());
        files.write("node.key", &node_key.serialize_pem());
        files.write("other.key", &other_key.serialize_pem());
        files.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
        files.write(
            "kubeconfig",
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    \
                 certificate-authority: {ca}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  \
                 context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
                ca = files.path("ca.crt").display()
            ),
        );
        files.write("broken-kubeconfig", "clusters: [unterminated\n");
        files.write("kubelet", "#!/bin/sh\necho v1.30.2\n");
        std::fs::create_dir(files.path("artifacts")).expect("artifact directory");
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    /// A valid config over these files, with `{name}` standing for a file here.
    fn config(&self) -> String {
        let text = r#"node_name = "worker-1"
role = "worker"
listen = "127.0.0.1:10265"
state_dir = "{state}"

[tls]
cert = "{node.crt}"
key = "{node.key}"
client_ca = "{ca.crt}"

[[components]]
name = "kubelet"
binary = "{kubelet}"

[kubernetes]
kubeconfig = "{kubeconfig}"

[artifacts]
ca_file = "{ca.crt}"
file_roots = ["{artifacts}"]
"#;
        let mut text = text.to_owned();
        for name in ["state", "node.crt", "node.key", "ca.crt", "kubelet", "kubeconfig", "artifacts"] {
            text = text.replace(&format!("{{{name}}}"), &self.path(name).display().to_string());
        }
        text
    }
}

fn check(config: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).expect("write config");
    run_check(&path)
}

fn run_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upkeep-agent"))
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .output()
        .expect("upkeep-agent runs")
}

/// The `key:` of every problem line printed, in order.
fn keys(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| line.strip_prefix("  - "))
        .filter_map(|line| line.split(": ").next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_config_whose_files_all_load_is_valid() {
    let files = Files::new();
    let output = check(&files.config());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration is valid"));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_named() {
    let files = Files::new();
    let config = files.config().replace("node.key", "other.key");
    let output = check(&config);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(keys(&output), ["tls.key"], "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match the certificate"));
}

#[test]
fn every_file_that_does_not_load_is_named_by_its_key() {
    let files = Files::new();
    std::fs::write(files.path("not-a-directory"), "").expect("write");
    let config = files
        .config()
        .replace("node.crt", "garbage.pem")
        .replacen("ca.crt\"\n\n[[components]]", "missing-ca.crt\"\n\n[[components]]", 1)
        .replace("/kubelet\"", "/missing-kubelet\"")
        .replace("/kubeconfig\"", "/broken-kubeconfig\"")
        .replace("ca_file = \"", "ca_file = \"/nonexistent")
        .replace("/artifacts\"", "/not-a-directory\"");
    let output = check(&config);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        keys(&output),
        [
            "tls.cert",
            "tls.client_ca",
            "components[0].binary",
            "components[0].version_command",
            "kubernetes.kubeconfig",
            "artifacts.ca_file",
            "artifacts.file_roots[0]"
        ],
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_example_config_parses_and_only_its_absent_files_are_reported() {
    let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/agent.example.toml"));
    let output = run_check(example);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let keys = keys(&output);
    assert!(!keys.is_empty(), "this host has no /etc/upkeep files, so the check cannot pass: {stderr}");
    let file_keys = ["tls.cert", "tls.key", "tls.client_ca", "components[0].", "kubernetes.kubeconfig"];
    for key in &keys {
        assert!(file_keys.iter().any(|file_key| key.starts_with(file_key)), "{key} is not a file problem: {stderr}");
    }
}

#[test]
fn every_problem_in_the_file_is_printed_with_its_key() {
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
    let output = run_check(Path::new("/nonexistent/agent.toml"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/agent.toml"));
}
