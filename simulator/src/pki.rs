//! The fleet's PKI on disk: a CA that signs every fake node's server
//! certificate, and the coordinator's client certificate, either in a
//! temporary directory or shared by the shards of one fleet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use upkeep_common::Role;
use upkeep_coordinator::certs::{self, CertificateAuthority, Validity};

use crate::fleet::FleetError;

/// The coordinator service's TLS files and a platform client's.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    /// The CA.
    pub ca: PathBuf,
    /// The service's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The platform client's certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

/// The fleet's CA and the coordinator's client certificate, on disk.
pub struct FleetPki {
    pub(crate) ca: CertificateAuthority,
    pub(crate) dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl FleetPki {
    /// A new CA in a temporary directory (for a run in one process).
    pub fn temporary() -> Result<FleetPki, FleetError> {
        let temporary = tempfile::tempdir().map_err(|e| FleetError::Setup(e.to_string()))?;
        let ca = CertificateAuthority::generate("upkeep-sim CA", Validity::days_from_now(7))?;
        let pki = FleetPki { ca, dir: temporary.path().to_path_buf(), _temporary: Some(temporary) };
        pki.write()?;
        Ok(pki)
    }

    /// The CA in `dir`, created there by whichever shard comes first (it takes
    /// `dir/.ca.lock` with an exclusive create; the others wait for `ca.crt`,
    /// which is written last).
    pub fn shared(dir: &Path) -> Result<FleetPki, FleetError> {
        std::fs::create_dir_all(dir).map_err(|e| FleetError::Setup(format!("{}: {e}", dir.display())))?;
        let lock = std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join(".ca.lock"));
        if lock.is_ok() {
            let ca = CertificateAuthority::generate("upkeep-sim CA", Validity::days_from_now(7))?;
            let pki = FleetPki { ca, dir: dir.to_path_buf(), _temporary: None };
            pki.write()?;
            return Ok(pki);
        }
        for _ in 0..600 {
            if dir.join("ca.crt").exists() {
                let ca = CertificateAuthority::load(dir)?;
                return Ok(FleetPki { ca, dir: dir.to_path_buf(), _temporary: None });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(FleetError::Setup(format!("{}: the shared CA never appeared", dir.display())))
    }

    /// Issues the coordinator service's server certificate (for 127.0.0.1) and
    /// a platform's client certificate with the operator role, as
    /// `service.crt`/`.key` and `platform.crt`/`.key`.
    pub fn issue_service(&self) -> Result<ServiceFiles, FleetError> {
        let validity = Validity::days_from_now(7);
        let server = self.ca.issue_server("upkeep-sim coordinator service", &["127.0.0.1".to_owned()], validity)?;
        certs::write_issued(&self.dir, "service", &server, true)?;
        let platform = self.ca.issue_client("upkeep-sim platform", Some(Role::Operator), Validity::days_from_now(7))?;
        certs::write_issued(&self.dir, "platform", &platform, true)?;
        let file = |name: &str| self.dir.join(name);
        Ok(ServiceFiles {
            ca: file("ca.crt"),
            cert: file("service.crt"),
            key: file("service.key"),
            client_cert: file("platform.crt"),
            client_key: file("platform.key"),
        })
    }

    fn write(&self) -> Result<(), FleetError> {
        certs::write_file(&self.dir.join("ca.key"), self.ca.key_pem(), 0o600, true)?;
        let coordinator =
            self.ca.issue_client("upkeep-sim coordinator", Some(Role::Admin), Validity::days_from_now(7))?;
        certs::write_issued(&self.dir, "coordinator", &coordinator, true)?;
        certs::write_file(&self.dir.join("ca.crt"), self.ca.cert_pem(), 0o644, true)?;
        Ok(())
    }
}
