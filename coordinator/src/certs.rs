//! Development certificates for a quick start and for tests: a CA, a server
//! certificate per node (with its IP and DNS names), and client certificates
//! whose Subject O value carries an upkeep role. Keys are ECDSA P-256.
//!
//! Production fleets bring certificates from their own PKI; these files have the
//! same shape, so the agent and the coordinator cannot tell the difference.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};
use upkeep_common::Role;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A subject alternative name is neither an IP address nor a DNS name.
    #[error("{0:?} is not an IP address or DNS name")]
    BadName(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists and would be overwritten.
    #[error("{0} already exists; remove it first to replace it")]
    Exists(PathBuf),
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid instant.
    pub not_before: OffsetDateTime,
    /// Last valid instant.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (for clock skew) until `days` from now.
    pub fn days_from_now(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Self { not_before: now - Duration::hours(1), not_after: now + Duration::days(i64::from(days)) }
    }

    /// A window that ended before now: for testing that expired certificates are refused.
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self { not_before: now - Duration::days(30), not_after: now - Duration::days(1) }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8).
    pub key_pem: String,
}

/// A certificate authority that can issue server and client certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl CertificateAuthority {
    /// Creates a new self-signed CA.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Self, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, "upkeep");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert_pem = params.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(Self { issuer: Issuer::new(params, key), cert_pem, key_pem })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self { issuer, cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// Loads `ca.crt` and `ca.key` from a directory.
    pub fn load(dir: &Path) -> Result<Self, CertsError> {
        let cert_pem = read(&dir.join("ca.crt"))?;
        let key_pem = read(&dir.join("ca.key"))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA certificate (PEM): the agent's `client_ca` and the coordinator's trust root.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate for a node, valid for every name in `names`
    /// (IP addresses become IP SANs, the rest DNS SANs).
    pub fn issue_server(
        &self,
        node_name: &str,
        names: &[String],
        validity: Validity,
    ) -> Result<IssuedCertificate, CertsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, node_name);
        for name in names {
            params.subject_alt_names.push(subject_alt_name(name)?);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, validity)
    }

    /// Issues a client certificate; `role` goes into the Subject O value.
    pub fn issue_client(
        &self,
        common_name: &str,
        role: Option<Role>,
        validity: Validity,
    ) -> Result<IssuedCertificate, CertsError> {
        self.issue_client_with_organization(common_name, role.map(Role::organization), validity)
    }

    /// Issues a client certificate whose Subject O value is `organization`, as given.
    pub fn issue_client_with_organization(
        &self,
        common_name: &str,
        organization: Option<&str>,
        validity: Validity,
    ) -> Result<IssuedCertificate, CertsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params.distinguished_name.push(DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, validity)
    }

    fn sign(&self, mut params: CertificateParams, validity: Validity) -> Result<IssuedCertificate, CertsError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn subject_alt_name(name: &str) -> Result<SanType, CertsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let is_dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !is_dns {
        return Err(CertsError::BadName(name.to_owned()));
    }
    let dns = name.to_owned().try_into().map_err(|_| CertsError::BadName(name.to_owned()))?;
    Ok(SanType::DnsName(dns))
}

fn read(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|source| CertsError::Io { path: path.to_owned(), source })
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename, fsync
/// of the directory) with the given mode; refuses to replace an existing file
/// unless `overwrite` is set.
pub fn write_file(path: &Path, contents: &str, mode: u32, overwrite: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source| CertsError::Io { path: path.to_owned(), source };
    if !overwrite && path.exists() {
        return Err(CertsError::Exists(path.to_owned()));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary).map_err(io_error)?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)?;
    Ok(())
}

/// Writes `NAME.crt` (0644) and `NAME.key` (0600) into `dir`.
pub fn write_issued(
    dir: &Path,
    name: &str,
    issued: &IssuedCertificate,
    overwrite: bool,
) -> Result<(PathBuf, PathBuf), CertsError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    write_file(&key_path, &issued.key_pem, 0o600, overwrite)?;
    write_file(&cert_path, &issued.cert_pem, 0o644, overwrite)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use upkeep_common::Identity;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn der_of(pem_text: &str) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem_text.as_bytes()).expect("PEM certificate").to_vec()
    }

    #[test]
    fn client_certificates_carry_their_role() {
        let ca = CertificateAuthority::generate("test CA", Validity::days_from_now(1)).expect("CA");
        let issued = ca.issue_client("ops", Some(Role::Operator), Validity::days_from_now(1)).expect("client");
        let identity = Identity::from_certificate_der(&der_of(&issued.cert_pem)).expect("readable");
        assert_eq!(
            identity,
            Identity { common_name: "ops".into(), role: Some(Role::Operator), cluster_roles: Default::default() }
        );
        let nobody = ca.issue_client("nobody", None, Validity::days_from_now(1)).expect("client");
        assert_eq!(Identity::from_certificate_der(&der_of(&nobody.cert_pem)).expect("readable").role, None);
    }

    #[test]
    fn server_certificates_list_ip_and_dns_names() {
        let ca = CertificateAuthority::generate("test CA", Validity::days_from_now(1)).expect("CA");
        let names = vec!["127.0.0.2".to_owned(), "worker-1.example".to_owned()];
        let issued = ca.issue_server("worker-1", &names, Validity::days_from_now(1)).expect("server");
        let der = der_of(&issued.cert_pem);
        let (_, certificate) = X509Certificate::from_der(&der).expect("parses");
        let san = certificate.subject_alternative_name().expect("ok").expect("present");
        let text = format!("{:?}", san.value.general_names);
        assert!(text.contains("127.0.0.2") || text.contains("[127, 0, 0, 2]"), "{text}");
        assert!(text.contains("worker-1.example"), "{text}");
        assert!(ca.issue_server("x", &["not a name".to_owned()], Validity::days_from_now(1)).is_err());
    }

    #[test]
    fn a_saved_ca_loads_back_and_still_issues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::generate("test CA", Validity::days_from_now(1)).expect("CA");
        write_file(&dir.path().join("ca.crt"), ca.cert_pem(), 0o644, false).expect("write");
        write_file(&dir.path().join("ca.key"), ca.key_pem(), 0o600, false).expect("write");
        let loaded = CertificateAuthority::load(dir.path()).expect("loads");
        let issued = loaded.issue_client("admin", Some(Role::Admin), Validity::days_from_now(1)).expect("issues");
        let (cert, key) = write_issued(dir.path(), "admin", &issued, false).expect("writes");
        assert!(cert.exists() && key.exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&key).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_issued(dir.path(), "admin", &issued, false), Err(CertsError::Exists(_))));
    }
}
