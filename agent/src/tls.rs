//! The server's TLS credentials: loaded from PEM files into a rustls server
//! configuration that demands a client certificate from the configured CA, and
//! reloaded without dropping the listener. Each new connection takes the latest
//! configuration; connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsPaths;

/// Why TLS credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// Which file: certificate, key or client CA.
        what: &'static str,
        /// Its path.
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

/// The one crypto provider of upkeep: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
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

/// Reads the private key in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// Builds the server configuration from the configured files.
pub fn build_server_config(paths: &TlsPaths) -> Result<ServerConfig, TlsError> {
    let client_ca = read_certificates(&paths.client_ca, "client CA")?;
    let chain = read_certificates(&paths.cert, "certificate")?;
    let key = read_private_key(&paths.key)?;
    server_config(client_ca, chain, key)
}

/// Builds the server configuration: TLS 1.3 and 1.2, a client certificate chained
/// to one of `client_ca` required, HTTP/1.1 over ALPN.
pub fn server_config(
    client_ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_ca {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The current server configuration, replaced whole on reload.
pub struct TlsStore {
    paths: Option<TlsPaths>,
    current: RwLock<Arc<ServerConfig>>,
    loaded_stamp: RwLock<Vec<Option<SystemTime>>>,
}

impl TlsStore {
    /// Loads the credentials once; fails if they are unusable.
    pub fn load(paths: TlsPaths) -> Result<TlsStore, TlsError> {
        let config = build_server_config(&paths)?;
        let stamp = file_stamps(&paths);
        Ok(TlsStore { paths: Some(paths), current: RwLock::new(Arc::new(config)), loaded_stamp: RwLock::new(stamp) })
    }

    /// A fixed configuration that is never reloaded (a simulated node's).
    pub fn fixed(config: ServerConfig) -> TlsStore {
        TlsStore { paths: None, current: RwLock::new(Arc::new(config)), loaded_stamp: RwLock::new(Vec::new()) }
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the files again; on failure the old configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(paths) = &self.paths else { return Ok(()) };
        let stamp = file_stamps(paths);
        let config = build_server_config(paths)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
        *self.loaded_stamp.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = stamp;
        Ok(())
    }

    /// Whether any of the files changed (by modification time) since the last load.
    pub fn files_changed(&self) -> bool {
        let Some(paths) = &self.paths else { return false };
        let loaded = self.loaded_stamp.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        *loaded != file_stamps(paths)
    }

    /// How often the files should be checked for changes, if at all.
    pub fn reload_interval(&self) -> Option<std::time::Duration> {
        self.paths.as_ref().and_then(|paths| paths.reload_interval)
    }
}

fn file_stamps(paths: &TlsPaths) -> Vec<Option<SystemTime>> {
    [&paths.cert, &paths.key, &paths.client_ca]
        .into_iter()
        .map(|path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok())
        .collect()
}
