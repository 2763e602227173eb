//! A server's credentials loaded from PEM files and reloaded without dropping
//! the listener: on SIGHUP and, when an interval is set, whenever a file's
//! modification time changes. Each new connection takes the latest
//! configuration; connections already open keep theirs. A reload that fails
//! (a half-written or broken file) keeps the previous credentials.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use tokio::signal::unix::Signal;

use crate::tls::{TlsError, read_certificates, read_private_key, server_config};

/// Paths of a server's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA that signs client certificates (PEM).
    pub client_ca: PathBuf,
    /// How often to look for changed files; `None` means on SIGHUP only.
    pub reload_interval: Option<Duration>,
}

impl TlsPaths {
    /// Builds the server configuration from the files as they are now.
    pub fn load(&self) -> Result<ServerConfig, TlsError> {
        let client_ca = read_certificates(&self.client_ca, "client CA")?;
        let chain = read_certificates(&self.cert, "certificate")?;
        let key = read_private_key(&self.key)?;
        server_config(client_ca, chain, key)
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [&self.cert, &self.key, &self.client_ca]
            .into_iter()
            .map(|path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok())
            .collect()
    }
}

/// The current server configuration, replaced whole on reload.
pub struct ServerCredentials {
    paths: Option<TlsPaths>,
    current: RwLock<Arc<ServerConfig>>,
    loaded_stamps: RwLock<Vec<Option<SystemTime>>>,
}

impl ServerCredentials {
    /// Loads the credentials once; fails if they are unusable.
    pub fn load(paths: TlsPaths) -> Result<ServerCredentials, TlsError> {
        let stamps = paths.stamps();
        let config = paths.load()?;
        Ok(ServerCredentials {
            paths: Some(paths),
            current: RwLock::new(Arc::new(config)),
            loaded_stamps: RwLock::new(stamps),
        })
    }

    /// A fixed configuration that is never reloaded.
    pub fn fixed(config: ServerConfig) -> ServerCredentials {
        ServerCredentials {
            paths: None,
            current: RwLock::new(Arc::new(config)),
            loaded_stamps: RwLock::new(Vec::new()),
        }
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Loads the files again; on failure the old configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(paths) = &self.paths else { return Ok(()) };
        let stamps = paths.stamps();
        let config = paths.load()?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
        *self.loaded_stamps.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads now and logs the outcome; the old credentials stay on failure.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => tracing::info!("TLS certificate, key and client CA reloaded"),
            Err(error) => tracing::error!(%error, "TLS reload failed; keeping the previous credentials"),
        }
    }

    /// Whether any of the files changed (by modification time) since the last load.
    pub fn files_changed(&self) -> bool {
        let Some(paths) = &self.paths else { return false };
        *self.loaded_stamps.read().unwrap_or_else(|poisoned| poisoned.into_inner()) != paths.stamps()
    }

    /// Reloads whenever the files change, checking every reload interval; returns
    /// at once when no interval is set.
    pub async fn reload_on_change_forever(self: Arc<Self>) {
        let Some(interval) = self.paths.as_ref().and_then(|paths| paths.reload_interval) else { return };
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if self.files_changed() {
                self.reload_and_log();
            }
        }
    }

    /// Reloads every time `signal` (SIGHUP) arrives.
    pub async fn reload_on_signal_forever(self: Arc<Self>, mut signal: Signal) {
        while signal.recv().await.is_some() {
            self.reload_and_log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_self_signed(dir: &std::path::Path, name: &str) {
        let key = KeyPair::generate().expect("key");
        let certificate =
            CertificateParams::new(vec![name.to_owned()]).expect("params").self_signed(&key).expect("cert");
        std::fs::write(dir.join("node.crt"), certificate.pem()).expect("write certificate");
        std::fs::write(dir.join("node.key"), key.serialize_pem()).expect("write key");
        std::fs::write(dir.join("ca.crt"), certificate.pem()).expect("write CA");
    }

    fn paths(dir: &std::path::Path) -> TlsPaths {
        TlsPaths {
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
            client_ca: dir.join("ca.crt"),
            reload_interval: Some(Duration::from_secs(1)),
        }
    }

    #[test]
    fn a_broken_file_keeps_the_old_credentials_and_a_good_one_replaces_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_self_signed(dir.path(), "first.example");
        let credentials = ServerCredentials::load(paths(dir.path())).expect("loads");
        let first = credentials.current();
        assert!(!credentials.files_changed());

        std::fs::write(dir.path().join("node.crt"), "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
            .expect("break the certificate");
        assert!(credentials.reload().is_err());
        assert!(Arc::ptr_eq(&first, &credentials.current()), "the old credentials stay in use");

        write_self_signed(dir.path(), "second.example");
        credentials.reload().expect("reloads");
        assert!(!Arc::ptr_eq(&first, &credentials.current()), "new connections get the new credentials");
        assert!(!credentials.files_changed());
    }

    #[test]
    fn fixed_credentials_never_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_self_signed(dir.path(), "fixed.example");
        let config = paths(dir.path()).load().expect("loads");
        let credentials = ServerCredentials::fixed(config);
        let before = credentials.current();
        credentials.reload().expect("nothing to reload");
        assert!(Arc::ptr_eq(&before, &credentials.current()));
        assert!(!credentials.files_changed());
    }
}
