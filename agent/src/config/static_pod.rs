//! The keys of a `kind = "static-pod"` component: its manifest in the kubelet's
//! manifest directory, the container whose image changes, where staged and
//! backup manifests live (outside that directory), the mirror pod that reports
//! the running container, and how images are pulled and health is checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::problems::Problems;

/// The command that pulls an image when none is configured (the image is appended).
pub const DEFAULT_PULL_COMMAND: [&str; 2] = ["/usr/bin/crictl", "pull"];

/// The schemes of a static pod's health and version URLs, and the rule a
/// refusal states.
pub(super) const WEB_SCHEMES: &[&str] = &["http://", "https://"];
pub(super) const WEB_RULE: &str = "must be an http:// or https:// URL";

/// A static pod's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPodSettings {
    /// The container whose image changes.
    pub container: String,
    /// Where staged and backup manifests live: outside the manifest directory
    /// (kubelet runs every file in it), on the same filesystem (a rename moves
    /// the new manifest in).
    pub staging_dir: PathBuf,
    /// The namespace of the mirror pod.
    pub namespace: String,
    /// The mirror pod's name (`NAME-NODE` as kubelet names it).
    pub mirror_pod: String,
    /// The command that pulls an image through the container runtime; the image is appended.
    pub pull_command: Vec<String>,
    /// The CA that signs the certificate of an `https://` health or version URL.
    pub health_ca: Option<PathBuf>,
    /// A URL answering `{"gitVersion": ...}` (the API server's `/version`), which
    /// must report the target after the swap.
    pub version_url: Option<String>,
    /// How long the new container must stay Ready without restarting.
    pub settle: Duration,
}

/// The static-pod keys of a `[[components]]` table, as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RawStaticPod {
    pub(super) manifest: Option<PathBuf>,
    pub(super) container: Option<String>,
    pub(super) staging_dir: Option<PathBuf>,
    pub(super) namespace: Option<String>,
    pub(super) mirror_pod: Option<String>,
    pub(super) pull_command: Option<Vec<String>>,
    pub(super) health_ca: Option<PathBuf>,
    pub(super) version_url: Option<String>,
    pub(super) settle_secs: Option<u64>,
}

/// The staging directory when none is configured: `upkeep-staged` beside the
/// manifest directory (`/etc/kubernetes/upkeep-staged` for kubeadm), on the
/// same filesystem and outside the directory kubelet reads.
pub fn default_staging_dir(manifest: &Path) -> PathBuf {
    let manifest_dir = manifest.parent().unwrap_or(Path::new("/"));
    manifest_dir.parent().unwrap_or(manifest_dir).join("upkeep-staged")
}

/// Validates a static pod's keys; `key` names a field of this component.
pub(super) fn validate_static_pod(
    name: Option<&str>,
    node_name: Option<&str>,
    raw: RawStaticPod,
    key: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<(PathBuf, StaticPodSettings)> {
    let manifest = problems.absolute_path(&key("manifest"), raw.manifest);
    let staging_dir = match (&manifest, raw.staging_dir) {
        (_, Some(dir)) => problems.absolute_path(&key("staging_dir"), Some(dir)),
        (Some(manifest), None) => Some(default_staging_dir(manifest)),
        (None, None) => None,
    };
    if let (Some(manifest), Some(staging)) = (&manifest, &staging_dir)
        && manifest.parent().is_some_and(|dir| staging.starts_with(dir))
    {
        problems.add(
            key("staging_dir"),
            format!("{} is inside the manifest directory; kubelet would run the staged copies", staging.display()),
        );
    }
    let container = raw.container.or_else(|| name.map(str::to_owned)).filter(|c| !c.is_empty());
    let mirror_pod = raw.mirror_pod.or_else(|| Some(format!("{}-{}", name?, node_name?)));
    let pull_command = match raw.pull_command {
        Some(command) => problems.command(&key("pull_command"), command),
        None => Some(DEFAULT_PULL_COMMAND.iter().map(|part| (*part).to_owned()).collect()),
    };
    let version_url = problems.optional_url(&key("version_url"), raw.version_url, WEB_SCHEMES, WEB_RULE);
    let settle = problems.seconds(&key("settle_secs"), raw.settle_secs, Duration::from_secs(5), (0, 600));
    let health_ca = match raw.health_ca {
        Some(path) => Some(problems.absolute_path(&key("health_ca"), Some(path))?),
        None => None,
    };
    Some((
        manifest?,
        StaticPodSettings {
            container: container?,
            staging_dir: staging_dir?,
            namespace: raw.namespace.unwrap_or_else(|| "kube-system".to_owned()),
            mirror_pod: mirror_pod?,
            pull_command: pull_command?,
            health_ca,
            version_url: version_url?,
            settle,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{AgentConfig, ComponentKind, RestartMethod};

    const BASE: &str = "node_name = \"cp-1\"\nrole = \"control-plane\"\nlisten = \"127.0.0.1:0\"\n\
        state_dir = \"/var/lib/upkeep\"\n[tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n";

    fn parse(component: &str) -> Result<AgentConfig, Vec<String>> {
        AgentConfig::parse(&format!("{BASE}[[components]]\n{component}"))
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn a_kubeadm_api_server_takes_its_defaults_from_the_manifest_and_node() {
        let config = parse(
            "name = \"kube-apiserver\"\nkind = \"static-pod\"\nmanifest = \"/etc/kubernetes/manifests/kube-apiserver.yaml\"\n\
             health_url = \"https://127.0.0.1:6443/readyz\"\nhealth_ca = \"/etc/kubernetes/pki/ca.crt\"\n\
             version_url = \"https://127.0.0.1:6443/version\"\n",
        )
        .expect("valid");
        let component = &config.components[0];
        assert_eq!(component.path, Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml"));
        assert_eq!(component.restart, RestartMethod::None);
        let ComponentKind::StaticPod(pod) = &component.kind else { panic!("a static pod") };
        assert_eq!(pod.container, "kube-apiserver");
        assert_eq!(pod.mirror_pod, "kube-apiserver-cp-1");
        assert_eq!(pod.namespace, "kube-system");
        assert_eq!(pod.staging_dir, Path::new("/etc/kubernetes/upkeep-staged"));
        assert_eq!(pod.pull_command, ["/usr/bin/crictl", "pull"]);
        assert_eq!(component.work_dir(), Path::new("/etc/kubernetes/upkeep-staged"));
    }

    #[test]
    fn the_kubeadm_control_plane_example_is_valid() {
        let example = include_str!("../../../systemd/agent.control-plane.example.toml");
        let config = AgentConfig::parse(example).unwrap_or_else(|problems| panic!("{problems:?}"));
        let static_pods: Vec<&str> =
            config.components.iter().filter(|c| c.static_pod().is_some()).map(|c| c.name.as_str()).collect();
        assert_eq!(static_pods, ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]);
        assert!(config.etcd.is_some() && config.kubernetes.is_some());
    }

    #[test]
    fn the_example_files_static_pod_block_is_valid_once_uncommented() {
        let example = include_str!("../../../systemd/agent.example.toml");
        let start = example.find("# [[components]]\n# name = \"kube-apiserver\"").expect("a static-pod block");
        let block = example[start..].split("\n\n").next().unwrap_or_default();
        let uncommented: String =
            block.lines().map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(&line[1..]))).collect();
        let config =
            AgentConfig::parse(&format!("{BASE}{uncommented}")).unwrap_or_else(|p| panic!("{p:?}\n{uncommented}"));
        let ComponentKind::StaticPod(pod) = &config.components[0].kind else { panic!("a static pod") };
        assert_eq!(pod.mirror_pod, "kube-apiserver-cp-1");
        assert_eq!(pod.health_ca.as_deref(), Some(Path::new("/etc/kubernetes/pki/ca.crt")));
    }

    #[test]
    fn staging_inside_the_manifest_directory_and_binary_keys_are_refused() {
        let inside = parse(
            "name = \"etcd\"\nkind = \"static-pod\"\nmanifest = \"/etc/kubernetes/manifests/etcd.yaml\"\n\
             staging_dir = \"/etc/kubernetes/manifests/upkeep\"\n",
        );
        assert_eq!(inside.expect_err("refused"), ["components[0].staging_dir"]);
        let with_binary = parse(
            "name = \"etcd\"\nkind = \"static-pod\"\nmanifest = \"/etc/kubernetes/manifests/etcd.yaml\"\n\
             binary = \"/usr/bin/etcd\"\n",
        );
        assert_eq!(with_binary.expect_err("refused"), ["components[0].binary"]);
        let manifest_on_a_binary = parse("name = \"etcd\"\nbinary = \"/usr/bin/etcd\"\nmanifest = \"/m/etcd.yaml\"\n");
        assert_eq!(manifest_on_a_binary.expect_err("refused"), ["components[0].kind"]);
        let unknown_kind = parse("name = \"etcd\"\nkind = \"container\"\nbinary = \"/usr/bin/etcd\"\n");
        assert_eq!(unknown_kind.expect_err("refused"), ["components[0].kind"]);
        let missing = parse("name = \"etcd\"\nkind = \"static-pod\"\n");
        assert_eq!(missing.expect_err("refused"), ["components[0].manifest"]);
    }
}
