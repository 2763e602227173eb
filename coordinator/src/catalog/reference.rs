//! The checks of single catalog values: names (channels, architectures,
//! risks), artifact sources, signatures, image references and manifest flags.
//! Each returns why a value is refused, in words for the person editing the file.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use upkeep_common::api::bounds::{MAX_FLAG_BYTES, MAX_SIGNATURE_BYTES, MAX_SOURCE_BYTES, is_flag};
use upkeep_common::image::ImageReference;

/// The longest risk message accepted.
const MAX_RISK_MESSAGE_BYTES: usize = 4_096;

/// A channel name: a DNS label (lowercase letters, digits, '-', 1 to 63).
pub fn channel(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a channel name (lowercase letters, digits and '-', 1 to 63)"))
    }
}

/// An architecture as nodes report it (`amd64`, `arm64`, `ppc64le`).
pub fn arch(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not an architecture (lowercase letters, digits and '_', 1 to 32)"))
    }
}

/// A risk's name (`CgroupV1Removed`) and message.
pub fn risk(name: &str, message: &str) -> Result<(), String> {
    if !(1..=128).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("name {name:?} must be 1 to 128 letters, digits, '.', '_' or '-'"));
    }
    if message.trim().is_empty() || message.len() > MAX_RISK_MESSAGE_BYTES {
        return Err(format!("message must be 1 to {MAX_RISK_MESSAGE_BYTES} bytes of text"));
    }
    Ok(())
}

/// An artifact source: an `https://` URL with a host, or a `file://` URL with an absolute path.
pub fn source(url: &str) -> Result<(), String> {
    if url.len() > MAX_SOURCE_BYTES {
        return Err(format!("is longer than {MAX_SOURCE_BYTES} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} holds whitespace"));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        return if host.is_empty() { Err(format!("{url:?} has no host")) } else { Ok(()) };
    }
    if let Some(path) = url.strip_prefix("file://") {
        return if path.starts_with('/') { Ok(()) } else { Err(format!("{url:?} is not file:///ABSOLUTE/PATH")) };
    }
    Err(format!("{url:?} is neither https:// nor file://"))
}

/// A signature: standard base64 of the 64 bytes of an ed25519 signature.
pub fn signature(text: &str) -> Result<(), String> {
    if text.len() > MAX_SIGNATURE_BYTES {
        return Err(format!("is longer than {MAX_SIGNATURE_BYTES} bytes"));
    }
    match STANDARD.decode(text) {
        Ok(bytes) if bytes.len() == 64 => Ok(()),
        Ok(bytes) => Err(format!("decodes to {} bytes; an ed25519 signature is 64", bytes.len())),
        Err(error) => Err(format!("is not base64: {error}")),
    }
}

/// An image reference pinned by digest: `NAME[:TAG]@sha256:<64 hex>`. A tag
/// alone is refused: the image behind a tag can change, a digest cannot.
pub fn image(reference: &str) -> Result<ImageReference, String> {
    reference.parse::<ImageReference>().map_err(|error| error.to_string())
}

/// A manifest flag to remove, as an upgrade request may carry it (see [`is_flag`]).
pub fn flag(text: &str) -> Result<(), String> {
    if text.len() <= MAX_FLAG_BYTES && is_flag(text) {
        Ok(())
    } else {
        Err(format!("{text:?} is not a flag (--name: letters, digits and '-', at most {MAX_FLAG_BYTES} bytes)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn images_need_a_digest_and_a_name() {
        assert!(image(&format!("registry.k8s.io/kube-apiserver:v1.31.2@sha256:{DIGEST}")).is_ok());
        assert!(image(&format!("registry.example:5000/etcd@sha256:{DIGEST}")).is_ok());
        let tag_only = image("registry.k8s.io/kube-apiserver:v1.31.2").expect_err("tag only");
        assert!(tag_only.contains("pinned by digest"), "{tag_only}");
        assert!(image(&format!("registry.k8s.io/x@sha512:{DIGEST}")).is_err());
        assert!(image(&format!("registry.k8s.io/x@sha256:{}", &DIGEST[1..])).is_err());
        assert!(image(&format!("registry.k8s.io/x@sha256:{}", DIGEST.to_uppercase())).is_err());
        assert!(image(&format!("@sha256:{DIGEST}")).is_err());
        assert!(image(&format!("bad name@sha256:{DIGEST}")).is_err());
    }

    #[test]
    fn sources_are_https_with_a_host_or_absolute_files() {
        assert!(source("https://mirror.example/k8s/kubelet").is_ok());
        assert!(source("file:///srv/kubelet").is_ok());
        for bad in
            ["http://mirror.example/kubelet", "https:///kubelet", "file://srv/kubelet", "ftp://x/y", "https://a b/c"]
        {
            assert!(source(bad).is_err(), "{bad} was accepted");
        }
        assert!(source(&format!("https://m.example/{}", "a".repeat(MAX_SOURCE_BYTES))).is_err());
    }

    #[test]
    fn signatures_are_base64_of_64_bytes() {
        assert!(signature(&STANDARD.encode([7u8; 64])).is_ok());
        assert!(signature(&STANDARD.encode([7u8; 63])).expect_err("short").contains("63 bytes"));
        assert!(signature("not base64!").is_err());
    }

    #[test]
    fn names_and_flags() {
        assert!(channel("stable").is_ok() && channel("Stable").is_err() && channel("").is_err());
        assert!(arch("amd64").is_ok() && arch("ppc64le").is_ok() && arch("AMD64").is_err() && arch("").is_err());
        assert!(risk("CgroupV1Removed", "cgroup v1 nodes fail").is_ok());
        assert!(risk("has space", "m").is_err() && risk("Name", " ").is_err());
        assert!(flag("--some-removed-flag").is_ok());
        assert!(flag("-x").is_err() && flag("--").is_err() && flag("--Flag=1").is_err());
    }
}
