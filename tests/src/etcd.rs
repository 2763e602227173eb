//! A real etcd (`/usr/bin/etcd`, from the `etcd-server` package) for tests: its
//! own CA, a server certificate for 127.0.0.1 and a client certificate like
//! kubeadm's `healthcheck-client`, client-certificate authentication required,
//! (etcd's JSON gateway dials etcd's own gRPC port with the server
//! certificate, so that one is also a client certificate, as kubeadm issues it),
//! free loopback ports, its data directory in memory (/dev/shm) when there is
//! one. [`Etcd::start`] waits until `/health` says true; dropping it kills etcd.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use tempfile::TempDir;

use crate::client::{ApiClient, client_config};
use crate::pki::ClientFiles;

/// How long etcd may take to say it is healthy.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running etcd member of a one-member cluster.
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    /// The client address (HTTPS, client certificate required).
    pub addr: SocketAddr,
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Etcd {
    /// Starts etcd and waits until it is healthy.
    pub async fn start() -> Etcd {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("upkeep-etcd-").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("upkeep-etcd-").tempdir()
        }
        .expect("etcd directory");
        write_pki(dir.path());

        let (client_port, peer_port) = (free_port(), free_port());
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=upkeep-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=upkeep-test={peer_url}"))
            .arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", dir.path().join("ca.crt").display()))
            .arg(format!("--cert-file={}", dir.path().join("server.crt").display()))
            .arg(format!("--key-file={}", dir.path().join("server.key").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("/usr/bin/etcd starts (apt-get install etcd-server)");
        let mut etcd = Etcd { child: Some(child), dir, addr: SocketAddr::from(([127, 0, 0, 1], client_port)) };
        etcd.wait_healthy().await;
        etcd
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited ({status}):\n{}", self.log());
            }
            if let Ok(mut client) = self.client().await
                && let Ok(reply) = client.get("/health").await
                && reply.status == 200
                && reply.json()["health"] == "true"
            {
                return;
            }
            assert!(Instant::now() < deadline, "etcd not healthy within {START_TIMEOUT:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client of etcd with its trusted client certificate.
    pub async fn client(&self) -> std::io::Result<ApiClient> {
        ApiClient::connect(self.addr, client_config(&self.ca(), Some(&self.client_files()))).await
    }

    /// The client URL, as an `[etcd]` endpoint.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signs etcd's certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The client certificate etcd trusts.
    pub fn client_files(&self) -> ClientFiles {
        ClientFiles {
            cert: self.dir.path().join("healthcheck-client.crt"),
            key: self.dir.path().join("healthcheck-client.key"),
        }
    }

    /// An `[etcd]` table reaching this etcd with `client`, plus `extra` keys.
    pub fn config_table(&self, client: &ClientFiles, extra: &str) -> String {
        format!(
            "[etcd]\nendpoints = [\"{}\"]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
            self.endpoint(),
            self.ca().display(),
            client.cert.display(),
            client.key.display()
        )
    }

    /// Puts `key` = `value` through the v3 JSON gateway.
    pub async fn put(&self, key: &str, value: &str) {
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let body = serde_json::json!({"key": encode(key), "value": encode(value)}).to_string();
        let mut client = self.client().await.expect("etcd client connects");
        let reply = client.post_json("/v3/kv/put", &body).await.expect("put answered");
        assert_eq!(reply.status, 200, "put {key}: {}", String::from_utf8_lossy(&reply.body));
    }

    /// Kills etcd and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What etcd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

/// Writes etcd's CA (`ca.crt`), its server certificate (`server.crt`, `.key`)
/// and a client certificate (`healthcheck-client.crt`, `.key`) into `dir`.
fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name.push(DnType::CommonName, "etcd-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    std::fs::write(dir.join("ca.crt"), ca.self_signed(&ca_key).expect("CA").pem()).expect("write CA");
    let issuer = Issuer::new(ca, ca_key);
    let issue = |name: &str, common_name: &str, usages: Vec<ExtendedKeyUsagePurpose>, server: bool| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        if server {
            params.subject_alt_names = vec![
                SanType::IpAddress([127, 0, 0, 1].into()),
                SanType::DnsName("localhost".try_into().expect("DNS name")),
            ];
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write certificate");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    };
    let both = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    issue("server", "etcd-server", both, true);
    issue("healthcheck-client", "kube-etcd-healthcheck-client", vec![ExtendedKeyUsagePurpose::ClientAuth], false);
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
