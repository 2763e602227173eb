//! Client configurations from PEM files: mutual TLS towards upkeep servers (the
//! fleet CA and the caller's certificate), and server-authenticated TLS towards
//! artifact sources (a configured CA bundle, or the public web's roots).

use std::path::Path;

use rustls::ClientConfig;

use crate::tls::{TlsError, client_config, public_roots, read_certificates, read_private_key, root_store};

/// A client trusting the CA in `ca` and presenting the certificate `cert` with its key `key`.
pub fn mutual_tls_client(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    let roots = root_store(read_certificates(ca, "CA")?)?;
    let chain = read_certificates(cert, "certificate")?;
    let key = read_private_key(key)?;
    client_config(roots, Some((chain, key)))
}

/// A client without a certificate of its own, trusting the CA bundle `ca` or,
/// when none is given, the public web's roots.
pub fn server_authenticated_client(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => root_store(read_certificates(path, "CA bundle")?)?,
        None => public_roots(),
    };
    client_config(roots, None)
}
