//! `[[components]]`: the managed binaries and static pods, and how each is
//! probed, restarted and checked.

use std::path::PathBuf;

use serde::Deserialize;
use upkeep_common::ids::ComponentName;

use super::problems::Problems;
use super::static_pod::{RawStaticPod, StaticPodSettings, WEB_RULE, WEB_SCHEMES, validate_static_pod};

/// One managed component: a binary, or a static pod's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Its name, such as `kubelet`.
    pub name: ComponentName,
    /// The file an upgrade replaces: the installed binary, or the static pod's
    /// manifest in the kubelet's manifest directory.
    pub path: PathBuf,
    /// A binary or a static pod.
    pub kind: ComponentKind,
    /// The command that prints a binary's version (empty for a static pod,
    /// whose version is its image's tag).
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

/// What kind of component it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentKind {
    /// A binary, swapped by rename and restarted through its service.
    Binary,
    /// A static pod: its manifest is rewritten with a new image, and kubelet
    /// restarts the pod when the manifest changes.
    StaticPod(StaticPodSettings),
}

impl ComponentConfig {
    /// Where its staged files, backups and kept previous files live: a hidden
    /// `.upkeep` directory beside a binary, or a static pod's staging directory.
    pub fn work_dir(&self) -> PathBuf {
        match &self.kind {
            ComponentKind::Binary => self.path.parent().unwrap_or(std::path::Path::new("/")).join(".upkeep"),
            ComponentKind::StaticPod(settings) => settings.staging_dir.clone(),
        }
    }

    /// The static pod's settings, for a static-pod component.
    pub fn static_pod(&self) -> Option<&StaticPodSettings> {
        match &self.kind {
            ComponentKind::StaticPod(settings) => Some(settings),
            ComponentKind::Binary => None,
        }
    }
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
    kind: Option<String>,
    binary: Option<PathBuf>,
    version_command: Option<Vec<String>>,
    service: Option<String>,
    restart_command: Option<Vec<String>>,
    health_url: Option<String>,
    kubernetes_skew: Option<bool>,
    node_reports_version: Option<bool>,
    manifest: Option<PathBuf>,
    container: Option<String>,
    staging_dir: Option<PathBuf>,
    namespace: Option<String>,
    mirror_pod: Option<String>,
    pull_command: Option<Vec<String>>,
    health_ca: Option<PathBuf>,
    version_url: Option<String>,
    settle_secs: Option<u64>,
}

impl RawComponent {
    /// The static-pod keys, taken out; whether any was set.
    fn take_static_pod(&mut self) -> (RawStaticPod, bool) {
        let raw = RawStaticPod {
            manifest: self.manifest.take(),
            container: self.container.take(),
            staging_dir: self.staging_dir.take(),
            namespace: self.namespace.take(),
            mirror_pod: self.mirror_pod.take(),
            pull_command: self.pull_command.take(),
            health_ca: self.health_ca.take(),
            version_url: self.version_url.take(),
            settle_secs: self.settle_secs.take(),
        };
        let any = raw != RawStaticPod::default();
        (raw, any)
    }
}

pub(super) fn validate_components(
    raw: Vec<RawComponent>,
    node_name: Option<&str>,
    problems: &mut Problems,
) -> Option<Vec<ComponentConfig>> {
    if raw.is_empty() {
        problems.add("components", "at least one [[components]] entry is required");
        return None;
    }
    let mut components = Vec::with_capacity(raw.len());
    let mut all_valid = true;
    for (index, component) in raw.into_iter().enumerate() {
        match validate_component(index, component, node_name, problems) {
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

fn validate_component(
    index: usize,
    mut raw: RawComponent,
    node_name: Option<&str>,
    problems: &mut Problems,
) -> Option<ComponentConfig> {
    let key = |field: &str| format!("components[{index}].{field}");
    let name = problems.required(&key("name"), raw.name.take()).and_then(|name| {
        name.parse::<ComponentName>().map_err(|error| problems.add(key("name"), error.to_string())).ok()
    });
    let (static_pod, static_keys_set) = raw.take_static_pod();
    match raw.kind.as_deref() {
        None | Some("binary") => {
            if static_keys_set {
                problems.add(key("kind"), "static-pod keys (manifest, container, ...) need kind = \"static-pod\"");
                return None;
            }
            validate_binary(name, raw, &key, problems)
        }
        Some("static-pod") => {
            for (field, set) in [
                ("binary", raw.binary.is_some()),
                ("version_command", raw.version_command.is_some()),
                ("service", raw.service.is_some()),
                ("restart_command", raw.restart_command.is_some()),
            ] {
                if set {
                    problems
                        .add(key(field), "a static pod has no binary: kubelet restarts it when its manifest changes");
                }
            }
            let health_url = problems.optional_url(&key("health_url"), raw.health_url, WEB_SCHEMES, WEB_RULE);
            let shown_name = name.as_ref().map(|n| n.as_str().to_owned());
            let (manifest, settings) =
                validate_static_pod(shown_name.as_deref(), node_name, static_pod, &key, problems)?;
            Some(ComponentConfig {
                name: name?,
                path: manifest,
                kind: ComponentKind::StaticPod(settings),
                version_command: Vec::new(),
                restart: RestartMethod::None,
                health_url: health_url?,
                kubernetes_skew: raw.kubernetes_skew.unwrap_or(false),
                node_reports_version: false,
            })
        }
        Some(other) => {
            problems.add(key("kind"), format!("must be \"binary\" or \"static-pod\", got {other:?}"));
            None
        }
    }
}

fn validate_binary(
    name: Option<ComponentName>,
    raw: RawComponent,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<ComponentConfig> {
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
    let health_url = problems.optional_url(
        &key("health_url"),
        raw.health_url,
        &["http://"],
        "must be an http:// URL (a local health endpoint)",
    );
    Some(ComponentConfig {
        name: name?,
        path: binary?,
        kind: ComponentKind::Binary,
        version_command: version_command?,
        restart: restart?,
        health_url: health_url?,
        kubernetes_skew: raw.kubernetes_skew.unwrap_or(false),
        node_reports_version: raw.node_reports_version.unwrap_or(false),
    })
}
