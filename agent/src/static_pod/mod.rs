//! Static pods: a control-plane component kubelet runs from a manifest in its
//! manifest directory. An upgrade rewrites the manifest with a new image
//! ([`manifest`]); kubelet restarts the pod; the mirror pod's container status
//! says whether the new container runs ([`running_problem`]).

pub mod host_check;
pub mod manifest;

use std::time::Duration;

use tokio::time::Instant;
use upkeep_common::Version;
use upkeep_common::image::version_of_image;

use crate::host::ProbeError;
use crate::host::kubernetes::ContainerObservation;

/// The largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The version a manifest's container runs: its image's tag.
pub fn manifest_version(text: &str, container: &str) -> Result<Version, ProbeError> {
    let image = manifest::container_image(text, container)
        .map_err(|error| ProbeError::NoVersion { output: error.to_string() })?;
    version_of_image(&image).ok_or(ProbeError::NoVersion { output: format!("image {image} has no version tag") })
}

/// Why the observed container does not run `image` Ready; `None` when it does.
/// A pinned image must be the one the runtime reports by digest (`imageID`);
/// an image without a digest must match by name.
pub fn running_problem(observed: Option<&ContainerObservation>, image: &str) -> Option<String> {
    let Some(observed) = observed else {
        return Some("the mirror pod does not report the container yet".to_owned());
    };
    let runs_image = match image.split_once("@sha256:") {
        Some((_, digest)) => observed.image_id.ends_with(&format!("sha256:{digest}")),
        None => observed.image == image || observed.image_id.starts_with(image),
    };
    if !runs_image {
        return Some(format!("the container runs {} ({}), not {image}", observed.image, observed.image_id));
    }
    if !observed.ready {
        return Some(format!("the container runs {image} but is not Ready (restarts: {})", observed.restart_count));
    }
    None
}

/// Tracks whether a Ready container has stayed Ready without restarting for
/// the settle time: a crash-looping image is Ready only for moments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settling {
    since: Option<(u32, Instant)>,
}

impl Settling {
    /// Records an observation at `now`: `ready_restarts` is the restart count of
    /// a Ready container running the right image, `None` otherwise. Whether it
    /// has been Ready with that count for `settle`.
    pub fn observe(&mut self, ready_restarts: Option<u32>, now: Instant, settle: Duration) -> bool {
        self.since = match (self.since, ready_restarts) {
            (_, None) => None,
            (Some((count, since)), Some(observed)) if count == observed => Some((count, since)),
            (_, Some(observed)) => Some((observed, now)),
        };
        self.since.is_some_and(|(_, since)| now.saturating_duration_since(since) >= settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn container(image_id: &str, ready: bool, restarts: u32) -> ContainerObservation {
        ContainerObservation {
            image: "registry.k8s.io/etcd:3.5.15-0".to_owned(),
            image_id: image_id.to_owned(),
            ready,
            restart_count: restarts,
        }
    }

    #[test]
    fn a_pinned_image_runs_only_when_the_runtime_reports_its_digest() {
        let pinned = format!("registry.k8s.io/etcd:3.5.15-0@sha256:{DIGEST}");
        let running = container(&format!("registry.k8s.io/etcd@sha256:{DIGEST}"), true, 0);
        assert_eq!(running_problem(Some(&running), &pinned), None);
        let other = container(&format!("registry.k8s.io/etcd@sha256:{}", "f".repeat(64)), true, 0);
        assert!(running_problem(Some(&other), &pinned).expect("other digest").contains("not"));
        let starting = container(&format!("registry.k8s.io/etcd@sha256:{DIGEST}"), false, 3);
        assert!(running_problem(Some(&starting), &pinned).expect("not ready").contains("not Ready"));
        assert!(running_problem(None, &pinned).is_some());
        assert_eq!(running_problem(Some(&other), "registry.k8s.io/etcd:3.5.15-0"), None, "by name without a digest");
    }

    #[test]
    fn settling_needs_the_same_restart_count_for_the_whole_time() {
        let start = Instant::now();
        let settle = Duration::from_secs(5);
        let mut settling = Settling::default();
        assert!(!settling.observe(Some(0), start, settle));
        assert!(!settling.observe(Some(0), start + Duration::from_secs(4), settle));
        assert!(!settling.observe(Some(1), start + Duration::from_secs(6), settle), "a restart starts over");
        assert!(!settling.observe(None, start + Duration::from_secs(12), settle), "not Ready starts over");
        assert!(!settling.observe(Some(1), start + Duration::from_secs(13), settle));
        assert!(settling.observe(Some(1), start + Duration::from_secs(18), settle));
        assert!(Settling::default().observe(Some(7), start, Duration::ZERO), "no settle time: Ready is enough");
    }

    #[test]
    fn a_manifests_version_is_its_image_tag() {
        let text = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.15-0\n";
        assert_eq!(manifest_version(text, "etcd").map(|v| v.core()), Ok((3, 5, 15)));
        let untagged = "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd\n";
        assert!(manifest_version(untagged, "etcd").is_err());
    }
}
