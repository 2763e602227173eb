//! A test PKI on disk: a CA, the node's server certificate, one client per role,
//! a client without a role, an expired client, and a client from a foreign CA.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use upkeep_common::Role;
use upkeep_coordinator::certs::{self, CertificateAuthority, IssuedCertificate, Validity};

/// A client certificate and key on disk.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// The test PKI.
pub struct Pki {
    dir: TempDir,
    ca: CertificateAuthority,
}

impl Pki {
    /// Creates the CA, the node certificate (for 127.0.0.1 and localhost) and every client.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::generate("upkeep test CA", Validity::days_from_now(2)).expect("CA");
        certs::write_file(&dir.path().join("ca.crt"), ca.cert_pem(), 0o644, false).expect("write CA");
        let pki = Pki { dir, ca };
        pki.issue_node("node", "worker-1");
        for (name, role) in [
            ("reader", Some(Role::Reader)),
            ("operator", Some(Role::Operator)),
            ("admin", Some(Role::Admin)),
            ("norole", None),
        ] {
            let issued = pki.ca.issue_client(name, role, Validity::days_from_now(2)).expect("client");
            pki.save(name, &issued);
        }
        let expired = pki.ca.issue_client("expired", Some(Role::Admin), Validity::expired()).expect("expired client");
        pki.save("expired", &expired);
        let foreign_ca = CertificateAuthority::generate("foreign CA", Validity::days_from_now(2)).expect("foreign CA");
        let foreign =
            foreign_ca.issue_client("intruder", Some(Role::Admin), Validity::days_from_now(2)).expect("foreign client");
        pki.save("foreign", &foreign);
        pki
    }

    /// Issues (or replaces) a server certificate `file_name.crt` with common
    /// name `common_name`, valid for localhost and 127.0.0.1 to 127.0.0.32.
    pub fn issue_node(&self, file_name: &str, common_name: &str) {
        let mut names: Vec<String> = (1..=32).map(|host| format!("127.0.0.{host}")).collect();
        names.push("localhost".to_owned());
        self.issue_server(file_name, common_name, &names);
    }

    /// Issues (or replaces) a server certificate `file_name.crt` with common
    /// name `common_name`, valid for exactly `names` (IP addresses and DNS names).
    pub fn issue_server(&self, file_name: &str, common_name: &str, names: &[String]) {
        let issued = self.ca.issue_server(common_name, names, Validity::days_from_now(2)).expect("server certificate");
        self.save(file_name, &issued);
    }

    /// Issues a client certificate `file_name` with any Common Name and O value
    /// (control characters and empty names included).
    pub fn issue_client(&self, file_name: &str, common_name: &str, organization: Option<&str>) -> ClientFiles {
        let issued = self
            .ca
            .issue_client_with_organization(common_name, organization, Validity::days_from_now(2))
            .expect("client certificate");
        self.save(file_name, &issued);
        self.client(file_name)
    }

    fn save(&self, name: &str, issued: &IssuedCertificate) {
        certs::write_issued(self.dir.path(), name, issued, true).expect("write certificate");
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A file in the PKI directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The client files named `name` (reader, operator, admin, norole, expired, foreign).
    pub fn client(&self, name: &str) -> ClientFiles {
        ClientFiles { cert: self.file(&format!("{name}.crt")), key: self.file(&format!("{name}.key")) }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
