//! `--check-config` for a static pod: its manifest names its container, the
//! staging directory (or its nearest existing parent) is on the manifest's
//! filesystem so a rename can move a new manifest in, and its pull command and
//! health CA exist. Reads only local files.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::{ComponentConfig, StaticPodSettings};
use crate::static_pod::manifest;

/// Every problem, each with the key it concerns.
pub fn problems(component: &ComponentConfig, settings: &StaticPodSettings) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&component.path)
        && let Err(error) = manifest::container_image(&text, &settings.container)
    {
        problems.push(("manifest", error.to_string()));
    }
    let manifest_device = component.path.parent().and_then(|dir| std::fs::metadata(dir).ok()).map(|m| m.dev());
    let staging_device =
        nearest_existing(&settings.staging_dir).and_then(|dir| std::fs::metadata(dir).ok()).map(|m| m.dev());
    if let (Some(manifests), Some(staging)) = (manifest_device, staging_device)
        && manifests != staging
    {
        problems.push((
            "staging_dir",
            format!(
                "{} is on another filesystem than {}: a manifest could not be renamed into place",
                settings.staging_dir.display(),
                component.path.display()
            ),
        ));
    }
    if let Some(message) =
        settings.pull_command.first().and_then(|program| crate::config_check::not_a_file(Path::new(program)))
    {
        problems.push(("pull_command", message));
    }
    if let Some(ca) = &settings.health_ca
        && let Err(error) = upkeep_net::client::server_authenticated_client(Some(ca))
    {
        problems.push(("health_ca", error.to_string()));
    }
    problems
}

/// `path`, or its nearest parent that exists (the staging directory is made on first use).
fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|ancestor| ancestor.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(dir: &Path, manifest_text: &str, pull: &str) -> ComponentConfig {
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).expect("manifests");
        std::fs::write(manifests.join("etcd.yaml"), manifest_text).expect("manifest");
        let text = format!(
            "node_name = \"cp-1\"\nrole = \"control-plane\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"/s\"\n\
             [tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n[[components]]\nname = \"etcd\"\n\
             kind = \"static-pod\"\nmanifest = \"{}\"\npull_command = [\"{pull}\"]\n",
            manifests.join("etcd.yaml").display()
        );
        let config = crate::config::AgentConfig::parse(&text).expect("valid");
        config.components[0].clone()
    }

    #[test]
    fn a_manifest_without_the_container_and_a_missing_pull_command_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.12-0\n";
        let etcd = component(dir.path(), good, "/bin/sh");
        let settings = etcd.static_pod().expect("static pod").clone();
        assert!(problems(&etcd, &settings).is_empty(), "{:?}", problems(&etcd, &settings));
        let other = good.replace("name: etcd", "name: other");
        let etcd = component(dir.path(), &other, "/nonexistent/crictl");
        let settings = etcd.static_pod().expect("static pod").clone();
        let keys: Vec<&str> = problems(&etcd, &settings).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["manifest", "pull_command"]);
    }

    #[test]
    fn a_staging_directory_on_another_filesystem_is_named() {
        let shm = Path::new("/dev/shm");
        let dir = tempfile::tempdir().expect("tempdir");
        let same = std::fs::metadata(dir.path()).map(|m| m.dev()).ok() == std::fs::metadata(shm).map(|m| m.dev()).ok();
        let good = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.12-0\n";
        let etcd = component(dir.path(), good, "/bin/sh");
        let mut settings = etcd.static_pod().expect("static pod").clone();
        settings.staging_dir = shm.join("upkeep-staged-check");
        let keys: Vec<&str> = problems(&etcd, &settings).into_iter().map(|(key, _)| key).collect();
        let expected: &[&str] = if same { &[] } else { &["staging_dir"] };
        assert_eq!(keys, expected);
    }
}
