//! A static pod's manifest as text: which image a container runs, and the same
//! manifest with that image changed and some flags removed, every other byte
//! kept. Pure.
//!
//! The edit is made on the text (so comments, key order and formatting stay),
//! then checked on the parsed documents: the result must parse to exactly the
//! old pod with the container's image replaced and the named flags taken out of
//! its `command` and `args`. A layout where a line-wise edit cannot achieve that
//! is refused rather than guessed at.

use yaml_rust2::{Yaml, YamlLoader};

/// Why a manifest cannot be read or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not one YAML (or JSON) document.
    #[error("the manifest is not one YAML document: {0}")]
    NotYaml(String),
    /// The document is not a Pod with `spec.containers`.
    #[error("the manifest is not a Pod with spec.containers")]
    NotAPod,
    /// No container of that name.
    #[error("the manifest has no container named {0:?}")]
    NoContainer(String),
    /// The container names no image.
    #[error("container {0:?} has no image")]
    NoImage(String),
    /// The change cannot be made by editing lines without touching anything else.
    #[error("the manifest's layout does not allow changing container {0:?} without changing anything else")]
    Layout(String),
}

/// The change a new release makes to one container of a manifest.
#[derive(Debug, Clone, Copy)]
pub struct ManifestEdit<'a> {
    /// The container whose image changes.
    pub container: &'a str,
    /// Its new image.
    pub image: &'a str,
    /// Flags taken out of its `command` and `args` (`--flag` and `--flag=...`).
    pub remove_flags: &'a [String],
}

/// The image container `container` runs in `text`.
pub fn container_image(text: &str, container: &str) -> Result<String, ManifestError> {
    let pod = parse_pod(text)?;
    let found = find_container(&pod, container)?;
    found["image"].as_str().map(str::to_owned).ok_or_else(|| ManifestError::NoImage(container.to_owned()))
}

/// `text` with `edit` applied, every other byte kept.
pub fn rewrite(text: &str, edit: &ManifestEdit<'_>) -> Result<String, ManifestError> {
    let old_image = container_image(text, edit.container)?;
    let mut expected = parse_pod(text)?;
    apply(&mut expected, edit);
    let lines: Vec<&str> = text.split_inclusive('\n').filter(|line| !removes_flag(line, edit.remove_flags)).collect();
    for (index, line) in lines.iter().enumerate() {
        if !line.contains(old_image.as_str()) {
            continue;
        }
        let mut candidate = String::with_capacity(text.len() + edit.image.len());
        for (other, kept) in lines.iter().enumerate() {
            if other == index {
                candidate.push_str(&kept.replacen(old_image.as_str(), edit.image, 1));
            } else {
                candidate.push_str(kept);
            }
        }
        if parse_pod(&candidate).is_ok_and(|pod| pod == expected) {
            return Ok(candidate);
        }
    }
    Err(ManifestError::Layout(edit.container.to_owned()))
}

fn parse_pod(text: &str) -> Result<Yaml, ManifestError> {
    let mut documents = YamlLoader::load_from_str(text).map_err(|error| ManifestError::NotYaml(error.to_string()))?;
    if documents.len() != 1 {
        return Err(ManifestError::NotYaml(format!("{} documents", documents.len())));
    }
    let pod = documents.remove(0);
    let is_pod = pod["kind"].as_str() == Some("Pod") && pod["spec"]["containers"].as_vec().is_some();
    if is_pod { Ok(pod) } else { Err(ManifestError::NotAPod) }
}

fn find_container<'a>(pod: &'a Yaml, name: &str) -> Result<&'a Yaml, ManifestError> {
    let containers = pod["spec"]["containers"].as_vec().ok_or(ManifestError::NotAPod)?;
    containers
        .iter()
        .find(|container| container["name"].as_str() == Some(name))
        .ok_or_else(|| ManifestError::NoContainer(name.to_owned()))
}

/// Whether `argument` is one of `flags`, alone or with `=value`.
fn is_removed_flag(argument: &str, flags: &[String]) -> bool {
    flags
        .iter()
        .any(|flag| argument == flag || argument.strip_prefix(flag.as_str()).is_some_and(|rest| rest.starts_with('=')))
}

/// Whether `line` is a block-sequence item holding one of `flags`.
fn removes_flag(line: &str, flags: &[String]) -> bool {
    let Some(item) = line.trim_start().strip_prefix("- ") else { return false };
    let item = item.trim();
    let unquoted = item
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .or_else(|| item.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')))
        .unwrap_or(item);
    is_removed_flag(unquoted, flags)
}

/// The parsed pod with `edit` made: the image set, the flags filtered.
fn apply(pod: &mut Yaml, edit: &ManifestEdit<'_>) {
    let Some(spec) = child_mut(pod, "spec") else { return };
    let Some(Yaml::Array(containers)) = child_mut(spec, "containers") else { return };
    for container in containers.iter_mut().filter(|c| c["name"].as_str() == Some(edit.container)) {
        if let Some(image) = child_mut(container, "image") {
            *image = Yaml::String(edit.image.to_owned());
        }
        for list in ["command", "args"] {
            if let Some(Yaml::Array(arguments)) = child_mut(container, list) {
                arguments.retain(|argument| !argument.as_str().is_some_and(|a| is_removed_flag(a, edit.remove_flags)));
            }
        }
    }
}

fn child_mut<'a>(node: &'a mut Yaml, key: &str) -> Option<&'a mut Yaml> {
    match node {
        Yaml::Hash(hash) => hash.get_mut(&Yaml::String(key.to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "registry.k8s.io/kube-apiserver:v1.30.2";
    const NEW: &str = "registry.k8s.io/kube-apiserver:v1.31.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A manifest as kubeadm writes it, with a comment and a sidecar added.
    const KUBEADM: &str = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.1:6443
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.1
    - --insecure-port=0   # removed in 1.24
    - --allow-privileged=true
    - \"--feature-gates=Foo=true\"
    image: registry.k8s.io/kube-apiserver:v1.30.2
    imagePullPolicy: IfNotPresent
    name: kube-apiserver
  - name: log-shipper
    image: registry.k8s.io/kube-apiserver:v1.30.2
    args: [\"--feature-gates=Foo=true\"]
  hostNetwork: true
  priorityClassName: system-node-critical
status: {}
";

    fn edit<'a>(flags: &'a [String]) -> ManifestEdit<'a> {
        ManifestEdit { container: "kube-apiserver", image: NEW, remove_flags: flags }
    }

    #[test]
    fn the_image_of_a_container_is_read() {
        assert_eq!(container_image(KUBEADM, "kube-apiserver").expect("found"), OLD);
        assert_eq!(container_image(KUBEADM, "etcd"), Err(ManifestError::NoContainer("etcd".into())));
        assert_eq!(container_image("kind: Service\nspec: {}\n", "x"), Err(ManifestError::NotAPod));
        assert!(matches!(container_image("a: [", "x"), Err(ManifestError::NotYaml(_))));
        assert!(matches!(container_image("kind: Pod\n---\nkind: Pod\n", "x"), Err(ManifestError::NotYaml(_))));
    }

    #[test]
    fn only_the_image_line_and_the_removed_flags_change() {
        let flags = vec!["--insecure-port".to_owned(), "--feature-gates".to_owned(), "--absent".to_owned()];
        let new = rewrite(KUBEADM, &edit(&flags)).expect("rewritten");
        let expected = KUBEADM
            .replace("    - --insecure-port=0   # removed in 1.24\n", "")
            .replace("    - \"--feature-gates=Foo=true\"\n", "")
            .replacen(&format!("    image: {OLD}\n"), &format!("    image: {NEW}\n"), 1);
        assert_eq!(new, expected);
        assert_eq!(container_image(&new, "log-shipper").expect("kept"), OLD, "the sidecar keeps its image");
    }

    #[test]
    fn a_prefix_of_a_flag_is_not_that_flag() {
        let flags = vec!["--allow".to_owned()];
        let new = rewrite(KUBEADM, &edit(&flags)).expect("rewritten");
        assert!(new.contains("--allow-privileged=true"));
    }

    #[test]
    fn json_manifests_are_edited_in_place() {
        let json = format!(
            "{{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"spec\": {{\n    \"containers\": [\n      {{\n        \"name\": \"etcd\",\n        \"image\": \"{OLD}\"\n      }}\n    ]\n  }}\n}}\n"
        );
        let new = rewrite(&json, &ManifestEdit { container: "etcd", image: NEW, remove_flags: &[] }).expect("ok");
        assert_eq!(new, json.replace(OLD, NEW));
    }

    #[test]
    fn a_layout_a_line_edit_cannot_change_alone_is_refused() {
        let shared = format!(
            "kind: Pod\nspec:\n  containers: [{{name: a, image: {OLD}}}, {{name: kube-apiserver, image: {OLD}}}]\n"
        );
        let refused = rewrite(&shared, &edit(&[]));
        assert_eq!(refused, Err(ManifestError::Layout("kube-apiserver".into())));
    }
}
