//! The simulated machine's probes and services: version probes (the kubelet
//! binary's, a static pod manifest's image tag), the kubelet service, health
//! and version URLs (the API server's answer from its running container),
//! image pulls and host facts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use upkeep_agent::config::{ComponentConfig, RestartMethod};
use upkeep_agent::host::health::HealthProbe;
use upkeep_agent::host::images::ImagePuller;
use upkeep_agent::host::services::{RestartError, RestartOutcome, ServiceManager};
use upkeep_agent::host::{BoxFuture, HostFactsSource, ProbeError, VersionProbe};
use upkeep_agent::static_pod::manifest_version;
use upkeep_common::Version;
use upkeep_common::api::{HostFacts, LoadAverage};

use super::Machine;
use crate::faults::FaultKind;
use crate::static_pods::{API_SERVER_READYZ, API_SERVER_VERSION};

/// `kubelet --version` reads the installed binary; a static pod's version is
/// its manifest's image tag.
pub(super) struct SimVersions(pub(super) Arc<Machine>);

impl VersionProbe for SimVersions {
    fn probe<'a>(
        &'a self,
        component: &'a ComponentConfig,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, ProbeError>> {
        Box::pin(async move {
            if let Some(pod) = component.static_pod() {
                let bytes = self.0.files().get(&component.path).cloned().unwrap_or_default();
                return manifest_version(&String::from_utf8_lossy(&bytes), &pod.container);
            }
            let text = String::from_utf8_lossy(&self.0.installed()).into_owned();
            Version::find_in_text(&text).ok_or(ProbeError::NoVersion { output: text })
        })
    }
}

/// The service manager: the kubelet service restarts; a component with no
/// service (a static pod, which kubelet restarts) has nothing to restart.
pub(super) struct SimServices(pub(super) Arc<Machine>);

impl ServiceManager for SimServices {
    fn restart<'a>(
        &'a self,
        component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<RestartOutcome, RestartError>> {
        Box::pin(async move {
            if component.restart == RestartMethod::None {
                return Ok(RestartOutcome::NothingToRestart);
            }
            self.0.step_delay().await;
            if self.0.hang_armed.swap(false, Ordering::Relaxed) {
                tokio::time::sleep(timeout).await;
                return Err(RestartError::Timeout(timeout));
            }
            self.0.restarts.fetch_add(1, Ordering::Relaxed);
            self.0.kubelet_started();
            Ok(RestartOutcome::Restarted)
        })
    }
}

/// Health: the API server's URLs answer from its running container; the
/// kubelet's fails on the new binary when its service will not start.
pub(super) struct SimHealth(pub(super) Arc<Machine>);

impl SimHealth {
    fn api_server(&self, url: &str) -> Result<Version, String> {
        match &self.0.static_pods {
            Some(kubelet) => kubelet.api_server().map_err(|reason| format!("{url}: {reason}")),
            None => Err(format!("{url}: no kube-apiserver runs on this node")),
        }
    }
}

impl HealthProbe for SimHealth {
    fn check<'a>(
        &'a self,
        url: &'a str,
        _ca: Option<&'a Path>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if url == API_SERVER_READYZ {
                self.api_server(url).map(|_| ())
            } else if self.0.fault() == Some(FaultKind::ServiceWontStart) && self.0.runs_new_binary() {
                Err("kubelet.service failed to start".to_owned())
            } else {
                Ok(())
            }
        })
    }

    fn version<'a>(
        &'a self,
        url: &'a str,
        _ca: Option<&'a Path>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, String>> {
        Box::pin(async move {
            match url {
                API_SERVER_VERSION => self.api_server(url),
                _ => Err(format!("{url}: a simulated host serves no such version URL")),
            }
        })
    }
}

/// Image pulls: every image is at hand, unless the node's fault says its
/// registry cannot serve them.
pub(super) struct SimImages(pub(super) Arc<Machine>);

impl ImagePuller for SimImages {
    fn pull<'a>(
        &'a self,
        _command: &'a [String],
        image: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0.step_delay().await;
            match self.0.fault() {
                Some(FaultKind::ImageUnpullable) => Err(format!("pulling {image}: manifest unknown")),
                _ => Ok(()),
            }
        })
    }
}

/// Static host facts.
pub(super) struct SimFacts;

impl HostFactsSource for SimFacts {
    fn facts(&self) -> HostFacts {
        HostFacts {
            arch: "amd64".to_owned(),
            os: "simulated".to_owned(),
            kernel: "simulated".to_owned(),
            cpus: 4,
            memory_total_bytes: 16 << 30,
            memory_available_bytes: 12 << 30,
            disk_path: "/usr/bin".to_owned(),
            disk_free_bytes: Some(100 << 30),
            uptime_seconds: 86_400,
            load: LoadAverage { one: 0.1, five: 0.1, fifteen: 0.1 },
        }
    }
}
