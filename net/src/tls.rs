//! rustls configurations built from PEM with upkeep's one protocol policy: the
//! ring provider, TLS 1.3 and 1.2, HTTP/1.1 over ALPN. Servers demand a client
//! certificate chained to their client CA; clients present theirs when they
//! have one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::sessions::RecentSessions;

/// The protocol versions upkeep speaks, preferred first.
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocols every upkeep endpoint serves, preferred first: HTTP/1.1,
/// and HTTP/1.0 for a client that offers only that (`curl --http1.0` does).
const ALPN_HTTP1: [&[u8]; 2] = [b"http/1.1", b"http/1.0"];

/// Why TLS material could not be turned into a configuration. None of these is
/// retryable without new material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("cannot read {what} from {}: {reason}", path.display())]
    Pem {
        /// Which item: certificate, key, CA.
        what: &'static str,
        /// Its path, or `<memory>` for PEM held in memory.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// rustls refused the material (key does not match, bad CA...).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be turned into a verifier.
    #[error("client CA refused: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The one crypto provider of upkeep: ring, with TLS 1.3's AES-128-GCM with
/// SHA-256 preferred. Its key schedule hashes with SHA-256, which this
/// kind of machine computes in hardware; SHA-384 (the default's first suite)
/// runs in software and cost a fleet's agents a tenth of their CPU in handshakes.
/// Built once and shared by every configuration of the process.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            let preferred = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
            provider.cipher_suites.retain(|suite| suite.suite() != preferred.suite());
            provider.cipher_suites.insert(0, preferred);
            Arc::new(provider)
        })
        .clone()
}

/// Reads every certificate in a PEM file; none at all is an error.
pub fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem { what, path: path.to_owned(), reason };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| pem_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certificates)
}

/// Reads every certificate in PEM text held in memory; none at all is an error.
pub fn parse_certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem { what, path: PathBuf::from("<memory>"), reason };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certificates)
}

/// Reads the private key in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Reads the private key in PEM text held in memory.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| TlsError::Pem {
        what: "private key",
        path: PathBuf::from("<memory>"),
        reason: error.to_string(),
    })
}

/// A root store holding `certificates`.
pub fn root_store(certificates: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate)?;
    }
    Ok(roots)
}

/// The public web's roots (Mozilla's list), for sources outside the fleet's PKI.
pub fn public_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// TLS 1.3 session tickets a server sends after each handshake. One is enough
/// to resume the next connection (which brings a new one), and a client that
/// talks to a whole fleet keeps every ticket it is given, each with the
/// server's certificate chain: two per handshake piled up to eight per node.
pub const TLS13_TICKETS: usize = 1;

/// TLS sessions a server remembers for its clients to resume. A server's
/// clients are few (coordinator replicas, Prometheus, an operator's tools),
/// and each resumes with the one ticket of its last handshake; a client past
/// the room pays a full handshake. The store grows with the sessions held
/// ([`RecentSessions`]): rustls' own cache sets aside its whole room up front,
/// which a fleet simulated in one process pays for per node.
pub const SERVER_SESSIONS: usize = 16;

/// A server configuration that requires a client certificate chained to one of
/// `client_ca` and presents `chain`.
pub fn server_config(
    client_ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(client_ca)?), provider.clone()).build()?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(serving_http1(config))
}

/// A server configuration that asks for no client certificate (a stand-in for
/// a server authenticating its clients otherwise, such as by bearer token).
pub fn server_config_without_client_auth(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(serving_http1(config))
}

/// What every upkeep server sets on its configuration: HTTP/1 by ALPN, one
/// session ticket per handshake, and room for [`SERVER_SESSIONS`] sessions.
fn serving_http1(mut config: ServerConfig) -> ServerConfig {
    config.alpn_protocols = ALPN_HTTP1.iter().map(|protocol| protocol.to_vec()).collect();
    config.send_tls13_tickets = TLS13_TICKETS;
    config.session_storage = Arc::new(RecentSessions::new(SERVER_SESSIONS));
    config
}

/// A client configuration trusting `roots`, presenting `identity` (certificate
/// chain and key) when given.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn aes_128_gcm_sha256_comes_first_and_every_suite_stays() {
        let provider = super::crypto_provider();
        let default = rustls::crypto::ring::default_provider();
        assert_eq!(provider.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(provider.cipher_suites.len(), default.cipher_suites.len(), "nothing dropped, nothing doubled");
    }
}
