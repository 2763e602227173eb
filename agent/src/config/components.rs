//! `[[components]]`: the managed binaries and how each is probed and restarted.

use std::path::PathBuf;

use serde::Deserialize;
use upkeep_common::ids::ComponentName;

use super::problems::Problems;

/// One managed binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Its name, such as `kubelet`.
    pub name: ComponentName,
    /// The installed binary's absolute path.
    pub binary: PathBuf,
    /// The command that prints its version.
    pub version_command: Vec<String>,
    /// How it is restarted after a swap.
    pub restart: RestartMethod,
    /// A URL that answers 2xx when the component is healthy.
    pub health_url: Option<String>,
    /// Whether the Kubernetes version skew rule applies to its versions (kubelet,
    /// kube-proxy): never newer than the oldest API server, at most three minors older.
    pub kubernetes_skew: bool,
    /// Whether the Node's `status.nodeInfo.kubeletVersion` reports this
    /// component (the kubelet): PostCheck then also waits for the Node to report
    /// the new version with a Ready heartbeat newer than the restart.
    pub node_reports_version: bool,
}

/// How a component is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartMethod {
    /// `systemctl restart UNIT`.
    Systemd(String),
    /// A command of its own, for hosts without systemd.
    Command(Vec<String>),
    /// Nothing to restart (a binary that is run on demand).
    None,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawComponent {
    name: Option<String>,
    binary: Option<PathBuf>,
    version_command: Option<Vec<String>>,
    service: Option<String>,
    restart_command: Option<Vec<String>>,
    health_url: Option<String>,
    kubernetes_skew: Option<bool>,
    node_reports_version: Option<bool>,
}

pub(super) fn validate_components(raw: Vec<RawComponent>, problems: &mut Problems) -> Option<Vec<ComponentConfig>> {
    if raw.is_empty() {
        problems.add("components", "at least one [[components]] entry is required");
        return None;
    }
    let mut components = Vec::new();
    let mut all_valid = true;
    for (index, component) in raw.into_iter().enumerate() {
        match validate_component(index, component, problems) {
            Some(component) => components.push(component),
            None => all_valid = false,
        }
    }
    for (index, component) in components.iter().enumerate() {
        if components[..index].iter().any(|earlier| earlier.name == component.name) {
            problems.add(format!("components[{index}].name"), format!("{} is listed twice", component.name));
            all_valid = false;
        }
    }
    all_valid.then_some(components)
}

fn validate_component(index: usize, raw: RawComponent, problems: &mut Problems) -> Option<ComponentConfig> {
    let key = |field: &str| format!("components[{index}].{field}");
    let name = problems.required(&key("name"), raw.name).and_then(|name| {
        name.parse::<ComponentName>().map_err(|error| problems.add(key("name"), error.to_string())).ok()
    });
    let binary = problems.absolute_path(&key("binary"), raw.binary);
    let version_command = match (raw.version_command, &binary) {
        (Some(command), _) => problems.command(&key("version_command"), command),
        (None, Some(binary)) => Some(vec![binary.display().to_string(), "--version".to_owned()]),
        (None, None) => None,
    };
    let restart = match (raw.service, raw.restart_command) {
        (Some(_), Some(_)) => {
            problems.add(key("restart_command"), "set either service or restart_command, not both");
            None
        }
        (Some(service), None) if service.is_empty() || service.contains(char::is_whitespace) => {
            problems.add(key("service"), format!("{service:?} is not a systemd unit name"));
            None
        }
        (Some(service), None) => Some(RestartMethod::Systemd(service)),
        (None, Some(command)) => problems.command(&key("restart_command"), command).map(RestartMethod::Command),
        (None, None) => Some(RestartMethod::None),
    };
    let health_url = match raw.health_url {
        Some(url) if !url.starts_with("http://") => {
            problems.add(key("health_url"), format!("{url:?} must be an http:// URL (a local health endpoint)"));
            None
        }
        other => Some(other),
    };
    Some(ComponentConfig {
        name: name?,
        binary: binary?,
        version_command: version_command?,
        restart: restart?,
        health_url: health_url?,
        kubernetes_skew: raw.kubernetes_skew.unwrap_or(false),
        node_reports_version: raw.node_reports_version.unwrap_or(false),
    })
}
