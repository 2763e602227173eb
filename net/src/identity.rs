//! The caller of a connection, from the leaf certificate it presented in the
//! handshake (whose chain rustls has already verified): its Common Name names
//! it and its Organization values give its role. A certificate that cannot be
//! read or whose Common Name is empty names nobody, and every request on that
//! connection is refused with `unauthenticated` (401).

use rustls::ServerConnection;
use upkeep_common::{ErrorBody, ErrorCode, Identity};

/// Why a verified client certificate does not identify a caller. Not retryable
/// with the same certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityRefused {
    /// The connection carries no client certificate.
    #[error("no client certificate was presented")]
    NoCertificate,
    /// The certificate's Subject could not be read.
    #[error("client certificate could not be read")]
    Unreadable,
    /// The Subject has no Common Name, or an empty one.
    #[error("client certificate has an empty Common Name")]
    EmptyCommonName,
}

impl IdentityRefused {
    /// The envelope answered to every request on the connection.
    pub fn envelope(&self) -> ErrorBody {
        ErrorBody::new(ErrorCode::Unauthenticated, self.to_string())
    }

    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityRefused::NoCertificate => "no_certificate",
            IdentityRefused::Unreadable => "unreadable_certificate",
            IdentityRefused::EmptyCommonName => "empty_common_name",
        }
    }
}

/// The identity in a DER certificate, refused when it names nobody.
pub fn identity_of_certificate(der: &[u8]) -> Result<Identity, IdentityRefused> {
    let identity = Identity::from_certificate_der(der).map_err(|_| IdentityRefused::Unreadable)?;
    if identity.common_name.trim().is_empty() {
        return Err(IdentityRefused::EmptyCommonName);
    }
    Ok(identity)
}

/// The caller of a server-side TLS connection.
pub fn peer_identity(connection: &ServerConnection) -> Result<Identity, IdentityRefused> {
    let leaf = connection.peer_certificates().and_then(|chain| chain.first()).ok_or(IdentityRefused::NoCertificate)?;
    identity_of_certificate(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(common_name: Option<&str>, organization: &str) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        if let Some(name) = common_name {
            subject.push(DnType::CommonName, name);
        }
        subject.push(DnType::OrganizationName, organization);
        params.distinguished_name = subject;
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().to_vec()
    }

    #[test]
    fn a_named_certificate_is_an_identity() {
        let identity = identity_of_certificate(&certificate(Some("ops"), "upkeep:operator")).expect("named");
        assert_eq!(identity.common_name, "ops");
        assert_eq!(identity.role, Some(upkeep_common::Role::Operator));
    }

    #[test]
    fn an_empty_or_missing_common_name_is_refused() {
        for name in [Some(""), Some("  "), None] {
            assert_eq!(
                identity_of_certificate(&certificate(name, "upkeep:admin")),
                Err(IdentityRefused::EmptyCommonName),
                "{name:?}"
            );
        }
        assert_eq!(identity_of_certificate(b"junk"), Err(IdentityRefused::Unreadable));
        assert_eq!(IdentityRefused::EmptyCommonName.envelope().http_status(), 401);
    }
}
