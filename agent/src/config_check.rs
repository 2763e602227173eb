//! What `upkeep-agent --check-config` checks beyond the file itself: that
//! everything the service loads at start loads. The TLS certificate, key and
//! client CA parse and the key matches the certificate; the kubeconfig (or the
//! in-cluster credentials) gives a client; the etcd CA, client certificate and
//! key load and the key matches the certificate; every component's binary and
//! commands exist (a static pod's manifest names its container, its staging
//! directory can take a rename into the manifest directory, its pull command
//! and CA exist); the artifact CA bundle parses and each file root is a
//! directory. Every problem is named by the key it concerns. Nothing here
//! contacts another host.

use std::path::Path;

use rustls::RootCertStore;
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;

use crate::config::{AgentConfig, ConfigProblem, EtcdConfig, RestartMethod};
use crate::host::fetch::ArtifactReader;
use crate::host::kube::KubeNodeAccess;
use upkeep_net::tls::{
    TlsError, client_config, crypto_provider, read_certificates, read_private_key, root_store, server_config,
};

/// Every problem with what `config` names on this host, in the order of the
/// config file; empty when the service would load it all.
pub async fn check(config: &AgentConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut add = |key: String, message: String| problems.push(ConfigProblem { key, message });
    for (key, message) in check_tls(config) {
        add(key.to_owned(), message);
    }
    for (index, component) in config.components.iter().enumerate() {
        let key = |field: &str| format!("components[{index}].{field}");
        if let Some(message) = not_a_file(&component.path) {
            add(key(if component.static_pod().is_some() { "manifest" } else { "binary" }), message);
        }
        if let Some(settings) = component.static_pod() {
            for (field, message) in crate::static_pod::host_check::problems(component, settings) {
                add(key(field), message);
            }
        }
        if let Some(message) = component.version_command.first().and_then(|program| not_a_file(Path::new(program))) {
            add(key("version_command"), message);
        }
        if let RestartMethod::Command(command) = &component.restart
            && let Some(message) = command.first().and_then(|program| not_a_file(Path::new(program)))
        {
            add(key("restart_command"), message);
        }
    }
    if let Some(kubernetes) = &config.kubernetes {
        let key = if kubernetes.kubeconfig.is_some() { "kubernetes.kubeconfig" } else { "kubernetes.in_cluster" };
        let access = KubeNodeAccess::connect(
            kubernetes.kubeconfig.as_deref(),
            config.node_name.as_str(),
            kubernetes.request_timeout,
        )
        .await;
        if let Err(error) = access {
            add(key.to_owned(), error.to_string());
        }
    }
    if let Some(etcd) = &config.etcd {
        for (key, message) in check_etcd(etcd) {
            add(key.to_owned(), message);
        }
    }
    if let Some(ca_file) = &config.artifacts.ca_file
        && let Err(error) = ArtifactReader::new(Some(ca_file))
    {
        add("artifacts.ca_file".to_owned(), error.to_string());
    }
    for (index, root) in config.artifacts.file_roots.iter().enumerate() {
        match std::fs::metadata(root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => add(format!("artifacts.file_roots[{index}]"), format!("{} is not a directory", root.display())),
            Err(error) => add(format!("artifacts.file_roots[{index}]"), format!("{}: {error}", root.display())),
        }
    }
    problems
}

/// The TLS files as the server loads them, each problem under its own key:
/// the certificate and the CA are parsed on their own, the key is matched
/// against the certificate, and the whole server configuration is built last.
fn check_tls(config: &AgentConfig) -> Vec<(&'static str, String)> {
    let tls = &config.tls;
    let mut problems = Vec::new();
    let chain = read_certificates(&tls.cert, "certificate")
        .map_err(|e| e.to_string())
        .and_then(|chain| match chain.first().map(ParsedCertificate::try_from) {
            Some(Err(error)) => Err(format!("{}: not a valid X.509 certificate: {error}", tls.cert.display())),
            _ => Ok(chain),
        })
        .map_err(|message| problems.push(("tls.cert", message)));
    let key = read_private_key(&tls.key).map_err(|e| problems.push(("tls.key", e.to_string())));
    let client_ca = read_certificates(&tls.client_ca, "client CA")
        .map_err(|e| e.to_string())
        .and_then(|certificates| {
            let mut roots = RootCertStore::empty();
            for certificate in &certificates {
                roots
                    .add(certificate.clone())
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", tls.client_ca.display()))?;
            }
            Ok(certificates)
        })
        .map_err(|message| problems.push(("tls.client_ca", message)));
    let (Ok(chain), Ok(key)) = (chain, key) else { return problems };
    if let Err(error) = CertifiedKey::from_der(chain.clone(), key.clone_key(), &crypto_provider()) {
        let message = match error {
            rustls::Error::InconsistentKeys(_) => {
                format!("{} does not match the certificate in {}", tls.key.display(), tls.cert.display())
            }
            other => format!("{} cannot be used with the certificate: {other}", tls.key.display()),
        };
        problems.push(("tls.key", message));
        return problems;
    }
    let Ok(client_ca) = client_ca else { return problems };
    if let Err(error) = server_config(client_ca, chain, key) {
        problems.push(match error {
            TlsError::Verifier(error) => ("tls.client_ca", error.to_string()),
            other => ("tls", other.to_string()),
        });
    }
    problems
}

/// The etcd client files as a snapshot loads them, each problem under its own
/// key: the CA and the certificate parse, and the key matches the certificate.
fn check_etcd(etcd: &EtcdConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let ca = read_certificates(&etcd.ca, "etcd CA")
        .and_then(root_store)
        .map_err(|error| problems.push(("etcd.ca", error.to_string())));
    let cert = read_certificates(&etcd.cert, "etcd client certificate")
        .map_err(|error| problems.push(("etcd.cert", error.to_string())));
    let key = read_private_key(&etcd.key).map_err(|error| problems.push(("etcd.key", error.to_string())));
    if let (Ok(roots), Ok(chain), Ok(key)) = (ca, cert, key)
        && let Err(error) = client_config(roots, Some((chain, key)))
    {
        problems
            .push(("etcd.key", format!("{} cannot be used with {}: {error}", etcd.key.display(), etcd.cert.display())));
    }
    problems
}

/// Why `path` is not an existing regular file, if it is not.
pub(crate) fn not_a_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => None,
        Ok(_) => Some(format!("{} is not a file", path.display())),
        Err(error) => Some(format!("{}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn etcd_config(dir: &Path) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec!["https://127.0.0.1:2379".to_owned()],
            ca: dir.join("ca.crt"),
            cert: dir.join("client.crt"),
            key: dir.join("client.key"),
            snapshot_timeout: Duration::from_secs(300),
            max_snapshot_bytes: 1 << 30,
            keep_snapshots: 3,
        }
    }

    fn keys(problems: &[(&'static str, String)]) -> Vec<&'static str> {
        problems.iter().map(|(key, _)| *key).collect()
    }

    #[test]
    fn the_etcd_files_load_and_the_key_matches_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = etcd_config(dir.path());
        assert_eq!(keys(&check_etcd(&config)), ["etcd.ca", "etcd.cert", "etcd.key"], "missing files");

        let ca = rcgen::generate_simple_self_signed(vec!["etcd-ca".to_owned()]).expect("CA");
        let client = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).expect("client");
        let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).expect("other");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write");
        write("ca.crt", ca.cert.pem());
        write("client.crt", client.cert.pem());
        write("client.key", client.signing_key.serialize_pem());
        assert!(check_etcd(&config).is_empty(), "{:?}", check_etcd(&config));

        write("client.key", other.signing_key.serialize_pem());
        let problems = check_etcd(&config);
        assert_eq!(keys(&problems), ["etcd.key"], "a key of another certificate: {problems:?}");
        write("ca.crt", "not PEM".to_owned());
        assert_eq!(keys(&check_etcd(&config))[0], "etcd.ca");
    }
}
