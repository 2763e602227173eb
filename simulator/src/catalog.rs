//! The one-release catalog the simulator writes for a coordinator: the
//! simulated kubelet of the release and, for a fleet with a control plane,
//! the release's static-pod images pinned by digest (`[[releases.images]]`).

use upkeep_common::Version;
use upkeep_common::api::ImageArtifact;

use crate::host::target_artifact;

/// The catalog text of release `to` on channel `stable`, with `images`.
pub fn one_release(to: &Version, images: &[ImageArtifact]) -> String {
    let (artifact, _) = target_artifact(to);
    let mut text = format!(
        "channel = \"stable\"\n[[releases]]\nversion = \"{to}\"\nchannels = [\"stable\"]\n[[releases.artifacts]]\n\
         component = \"kubelet\"\narch = \"amd64\"\nsource = {:?}\nsha256 = \"{}\"\n",
        artifact.source, artifact.sha256
    );
    for image in images {
        text.push_str(&format!(
            "[[releases.images]]\ncomponent = \"{}\"\nimage = \"{}\"\n",
            image.component,
            image.image.as_str()
        ));
    }
    text
}
