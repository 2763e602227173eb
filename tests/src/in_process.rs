//! The real agent server inside the current process, over the real host
//! implementations and a fake kubelet: for benches and tests that need no
//! separate process.

use std::net::SocketAddr;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use upkeep_agent::app::App;
use upkeep_agent::config::AgentConfig;
use upkeep_agent::host::Host;
use upkeep_agent::server;
use upkeep_agent::store::Store;
use upkeep_net::ServerCredentials;

use crate::agent_process::{AgentSetup, config_text};
use crate::fake_kubelet;
use crate::pki::Pki;

/// A running in-process agent; stops when dropped.
pub struct InProcessAgent {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

impl InProcessAgent {
    /// Starts the server on an ephemeral loopback port, with `extra` config.
    pub async fn start(pki: &Pki, kubelet_version: &str, extra: &str) -> InProcessAgent {
        Self::start_with_components(pki, kubelet_version, "", extra).await
    }

    /// Like [`InProcessAgent::start`], with extra keys for the kubelet's component table.
    pub async fn start_with_components(
        pki: &Pki,
        kubelet_version: &str,
        component_extra: &str,
        extra: &str,
    ) -> InProcessAgent {
        Self::start_with_host(pki, kubelet_version, component_extra, extra, |_| {}).await
    }

    /// Like [`InProcessAgent::start_with_components`], with the real host
    /// changed by `customize` first (a test replaces one part to script it).
    pub async fn start_with_host(
        pki: &Pki,
        kubelet_version: &str,
        component_extra: &str,
        extra: &str,
        customize: impl FnOnce(&mut Host),
    ) -> InProcessAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubelet = fake_kubelet::write(dir.path(), "kubelet", kubelet_version);
        let setup = AgentSetup {
            component_extra: component_extra.to_owned(),
            extra: extra.to_owned(),
            ..AgentSetup::kubelet(kubelet_version)
        };
        let config = AgentConfig::parse(&config_text(pki, dir.path(), &kubelet, &setup)).expect("valid config");
        let tls = Arc::new(ServerCredentials::load(config.tls.clone()).expect("TLS material"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let mut host = Host::real(&config).await.expect("real host");
        customize(&mut host);
        let store = Store::open(&config.state_dir).expect("state directory");
        let app = Arc::new(App::new(config, host, store).expect("agent state"));
        app.start().await;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::serve(listener, tls, app, async {
            let _ = stopped.await;
        }));
        InProcessAgent { addr, stop: Some(stop), _dir: dir }
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
