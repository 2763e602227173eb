//! Container image references pinned by digest, as a static-pod component's
//! artifact: `registry/repository[:tag]@sha256:<64 hex>`. A reference without a
//! digest is refused, since a tag can be moved to other content.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::Sha256;
use crate::version::Version;

/// The longest image reference accepted, in bytes.
pub const MAX_IMAGE_BYTES: usize = 512;

/// An image reference with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    text: String,
    name_end: usize,
    tag: Option<String>,
    digest: Sha256,
}

/// Why a string is not a pinned image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Empty, too long, or holding characters no reference may hold.
    #[error(
        "{0:?} is not an image reference (1 to {MAX_IMAGE_BYTES} bytes of letters, digits, '/', ':', '@', '.', '_', '-')"
    )]
    Malformed(String),
    /// No `@sha256:` digest: a tag alone can be moved.
    #[error("{0:?} has no @sha256: digest; an image must be pinned by digest, a tag alone is refused")]
    NoDigest(String),
    /// The digest is not 64 lowercase hexadecimal characters.
    #[error("{0:?} has a digest that is not 64 lowercase hexadecimal characters")]
    BadDigest(String),
}

impl ImageReference {
    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The repository with its registry, without tag or digest
    /// (`registry.k8s.io/kube-apiserver`).
    pub fn repository(&self) -> &str {
        &self.text[..self.name_end]
    }

    /// The tag, if the reference has one (`v1.31.2`).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The content digest.
    pub fn digest(&self) -> &Sha256 {
        &self.digest
    }

    /// The version the tag names, if it names one (`v1.31.2`, `3.5.15-0`).
    pub fn version(&self) -> Option<Version> {
        self.tag.as_deref().and_then(|tag| tag.parse().ok())
    }
}

/// The reference without its `@digest`, for any reference text: what two
/// references of one tagged image share.
pub fn without_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

/// The repository with its registry, without tag or digest, for any reference
/// text (a port in the registry is not a tag).
pub fn repository_of(image: &str) -> &str {
    let name = without_digest(image);
    let last_slash = name.rfind('/').map_or(0, |index| index + 1);
    name[last_slash..].find(':').map_or(name, |colon| &name[..last_slash + colon])
}

/// The version an image reference's tag names, for any reference text, pinned
/// or not (a running manifest may still carry a tag-only image).
pub fn version_of_image(image: &str) -> Option<Version> {
    let name = without_digest(image);
    name.get(repository_of(image).len()..)?.strip_prefix(':')?.parse().ok()
}

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b':' | b'@' | b'.' | b'_' | b'-')
}

impl FromStr for ImageReference {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || text.len() > MAX_IMAGE_BYTES || !text.bytes().all(allowed) {
            return Err(ImageError::Malformed(text.chars().take(80).collect()));
        }
        let Some((name, digest)) = text.split_once("@sha256:") else {
            return Err(ImageError::NoDigest(text.to_owned()));
        };
        let digest: Sha256 = digest.parse().map_err(|_| ImageError::BadDigest(text.to_owned()))?;
        let name_end = repository_of(name).len();
        let tag = name[name_end..].strip_prefix(':').map(str::to_owned);
        let repository_ok = name_end > 0 && !name[..name_end].ends_with('/') && !name[..name_end].contains('@');
        if !repository_ok || tag.as_deref().is_some_and(|tag| tag.is_empty() || tag.contains(':')) {
            return Err(ImageError::Malformed(text.to_owned()));
        }
        Ok(ImageReference { text: text.to_owned(), name_end, tag, digest })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl Serialize for ImageReference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ImageReference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_pinned_reference_splits_into_its_parts() {
        let text = format!("registry.k8s.io/kube-apiserver:v1.31.2@sha256:{DIGEST}");
        let image: ImageReference = text.parse().expect("pinned");
        assert_eq!(image.repository(), "registry.k8s.io/kube-apiserver");
        assert_eq!(image.tag(), Some("v1.31.2"));
        assert_eq!(image.digest().as_str(), DIGEST);
        assert_eq!(image.version(), Some(Version::new(1, 31, 2)));
        assert_eq!(image.to_string(), text);
    }

    #[test]
    fn a_port_in_the_registry_is_not_a_tag_and_etcd_tags_are_versions() {
        let image: ImageReference = format!("localhost:5000/etcd:3.5.15-0@sha256:{DIGEST}").parse().expect("pinned");
        assert_eq!(image.repository(), "localhost:5000/etcd");
        assert_eq!(image.version().map(|v| v.core()), Some((3, 5, 15)));
        let untagged: ImageReference = format!("localhost:5000/etcd@sha256:{DIGEST}").parse().expect("pinned");
        assert_eq!(untagged.repository(), "localhost:5000/etcd");
        assert_eq!(untagged.tag(), None);
        assert_eq!(untagged.version(), None);
    }

    #[test]
    fn a_tag_alone_and_malformed_references_are_refused() {
        assert!(matches!(
            "registry.k8s.io/kube-apiserver:v1.31.2".parse::<ImageReference>(),
            Err(ImageError::NoDigest(_))
        ));
        assert!(matches!("repo@sha256:abc".parse::<ImageReference>(), Err(ImageError::BadDigest(_))));
        for bad in ["", "has space@sha256:x", "repo:@sha256:", "/@sha256:"] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?}");
        }
        assert!(format!("repo:a:b@sha256:{DIGEST}").parse::<ImageReference>().is_err());
        assert!("a".repeat(MAX_IMAGE_BYTES + 1).parse::<ImageReference>().is_err());
    }

    #[test]
    fn any_reference_text_splits_into_repository_tag_and_digest() {
        let pinned = format!("localhost:5000/etcd:3.5.15-0@sha256:{DIGEST}");
        assert_eq!(without_digest(&pinned), "localhost:5000/etcd:3.5.15-0");
        assert_eq!(repository_of(&pinned), "localhost:5000/etcd");
        assert_eq!(repository_of("localhost:5000/etcd"), "localhost:5000/etcd");
        assert_eq!(repository_of("etcd:3.5.15-0"), "etcd");
    }

    #[test]
    fn the_version_of_any_reference_comes_from_its_tag() {
        assert_eq!(version_of_image("registry.k8s.io/kube-scheduler:v1.30.2"), Some(Version::new(1, 30, 2)));
        assert_eq!(
            version_of_image(&format!("localhost:5000/etcd:3.5.15-0@sha256:{DIGEST}")).map(|v| v.core()),
            Some((3, 5, 15))
        );
        assert_eq!(version_of_image("localhost:5000/etcd"), None);
        assert_eq!(version_of_image("repo:latest"), None);
    }
}
