//! `upkeep-sim fake-apiserver`: the fake Kubernetes API server on its own, with
//! one schedulable Node, and a kubeconfig for an agent written beside it, so a
//! real `upkeep-agent` process can be pointed at it from a script.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::kube_api::{FakeApiError, FakeApiServer};

/// The name of the kubeconfig file written into the directory.
pub const KUBECONFIG_FILE: &str = "kubeconfig";

/// What to serve.
#[derive(Debug, Clone)]
pub struct FakeApiConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The directory the kubeconfig is written into (created when missing).
    pub dir: PathBuf,
    /// The `gitVersion` the server reports.
    pub version: String,
    /// The Node the server holds.
    pub node: String,
}

/// Why the fake API server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FakeApiServeError {
    /// The server could not start (certificates, TLS or the listen address); not retryable.
    #[error("fake API server: {0}")]
    Start(#[from] FakeApiError),
    /// The kubeconfig could not be written; not retryable.
    #[error("cannot write {path}: {source}")]
    Kubeconfig {
        /// The file or directory that was being written.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// A started fake API server and the kubeconfig that points at it; the server
/// stops when this is dropped.
pub struct StartedFakeApi {
    /// The running server.
    pub server: FakeApiServer,
    /// The kubeconfig written for the agent.
    pub kubeconfig: PathBuf,
}

/// Starts the server with `config.node` in it and writes its kubeconfig
/// (owner-only, atomically) into `config.dir`.
pub async fn start(config: &FakeApiConfig) -> Result<StartedFakeApi, FakeApiServeError> {
    let server = FakeApiServer::start_on(&config.version, config.listen).await?;
    server.state().add_node(&config.node);
    let kubeconfig = config.dir.join(KUBECONFIG_FILE);
    write_atomically(&config.dir, &kubeconfig, server.kubeconfig().as_bytes())?;
    Ok(StartedFakeApi { server, kubeconfig })
}

/// Writes `contents` to a new owner-only file in `dir`, syncs it and renames it to `path`.
fn write_atomically(dir: &std::path::Path, path: &std::path::Path, contents: &[u8]) -> Result<(), FakeApiServeError> {
    let failed = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| FakeApiServeError::Kubeconfig { path, source }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed(dir))?;
    file.write_all(contents).map_err(failed(path))?;
    file.as_file().sync_all().map_err(failed(path))?;
    file.persist(path).map_err(|e| e.error).map_err(failed(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed(dir))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use upkeep_agent::host::kube::KubeNodeAccess;
    use upkeep_agent::host::kubernetes::NodeAccess;
    use upkeep_common::Version;

    use super::*;

    #[tokio::test]
    async fn the_written_kubeconfig_reaches_the_server_that_holds_the_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FakeApiConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            dir: dir.path().join("api"),
            version: "v1.30.7".to_owned(),
            node: "worker-9".to_owned(),
        };
        let started = start(&config).await.expect("starts");
        assert_eq!(started.kubeconfig, dir.path().join("api").join(KUBECONFIG_FILE));
        let mode = std::fs::metadata(&started.kubeconfig).expect("written").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the kubeconfig holds a token: owner-only, got {mode:o}");
        assert!(started.server.state().node("worker-9").is_some());
        let access = KubeNodeAccess::connect(Some(&started.kubeconfig), "worker-9", Duration::from_secs(10))
            .await
            .expect("the kubeconfig loads");
        let version = access.control_plane_version().await.expect("the server answers with the token");
        assert_eq!(version, Some(Version::new(1, 30, 7)));
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FakeApiConfig {
            listen: taken.local_addr().expect("address"),
            dir: dir.path().to_path_buf(),
            version: "v1.30.9".to_owned(),
            node: "worker-1".to_owned(),
        };
        assert!(matches!(start(&config).await, Err(FakeApiServeError::Start(_))));
        assert!(!dir.path().join(KUBECONFIG_FILE).exists());
    }
}
