//! The bounds on every number and string a write request carries, and the
//! checks that report each value out of bounds as a field detail (422). The
//! OpenAPI document states the same limits.

use crate::api::request::{DrainOptions, UpgradeRequest};
use crate::error::ErrorDetail;

/// The longest drain timeout a request may ask for: one day.
pub const MAX_DRAIN_TIMEOUT_SECONDS: u64 = 86_400;
/// The longest grace period a request may give an evicted pod: one hour.
pub const MAX_GRACE_PERIOD_SECONDS: u64 = 3_600;
/// The most artifacts one upgrade may carry.
pub const MAX_ARTIFACTS: usize = 32;
/// The longest artifact source URL, in bytes.
pub const MAX_SOURCE_BYTES: usize = 2_048;
/// The longest signature text, in bytes (a base64 ed25519 signature is 88).
pub const MAX_SIGNATURE_BYTES: usize = 256;
/// The most flags one image may remove from its manifest.
pub const MAX_REMOVED_FLAGS: usize = 32;
/// The longest flag to remove, in bytes.
pub const MAX_FLAG_BYTES: usize = 128;
/// The longest pod label selector, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 1_024;

/// Every bound `request` breaks, each as a detail naming the field.
pub fn upgrade_problems(request: &UpgradeRequest) -> Vec<ErrorDetail> {
    let mut problems = Vec::new();
    if request.artifacts.len() > MAX_ARTIFACTS {
        problems.push(too_many("artifacts", MAX_ARTIFACTS));
    }
    for (index, artifact) in request.artifacts.iter().enumerate() {
        if artifact.source.len() > MAX_SOURCE_BYTES {
            problems.push(too_long(&format!("artifacts[{index}].source"), MAX_SOURCE_BYTES));
        }
        if artifact.signature.as_ref().is_some_and(|s| s.len() > MAX_SIGNATURE_BYTES) {
            problems.push(too_long(&format!("artifacts[{index}].signature"), MAX_SIGNATURE_BYTES));
        }
    }
    if request.images.len() > MAX_ARTIFACTS {
        problems.push(too_many("images", MAX_ARTIFACTS));
    }
    for (index, image) in request.images.iter().enumerate() {
        if image.remove_flags.len() > MAX_REMOVED_FLAGS {
            problems.push(too_many(&format!("images[{index}].remove_flags"), MAX_REMOVED_FLAGS));
        }
        for (position, flag) in image.remove_flags.iter().enumerate() {
            let field = format!("images[{index}].remove_flags[{position}]");
            if flag.len() > MAX_FLAG_BYTES {
                problems.push(too_long(&field, MAX_FLAG_BYTES));
            } else if !is_flag(flag) {
                problems.push(ErrorDetail::new(
                    field,
                    "invalid_format",
                    "a flag starts with '--' followed by letters, digits and '-'",
                ));
            }
        }
    }
    if let Some(drain) = &request.drain {
        problems.extend(drain_problems(drain, "drain"));
    }
    problems
}

/// Whether `flag` is a command-line flag name such as `--feature-gates`: `--`,
/// then letters, digits and '-', not starting with '-'. The release catalog
/// holds its `remove_flags` to the same rule, so it never lists one a request refuses.
pub fn is_flag(flag: &str) -> bool {
    flag.strip_prefix("--").is_some_and(|name| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !name.starts_with('-')
    })
}

/// Every bound `drain` breaks; `prefix` is its field path (`drain`).
pub fn drain_problems(drain: &DrainOptions, prefix: &str) -> Vec<ErrorDetail> {
    let mut problems = Vec::new();
    let mut check = |name: &str, value: Option<u64>, max: u64| {
        if value.is_some_and(|value| value > max) {
            problems.push(ErrorDetail::new(
                format!("{prefix}.{name}"),
                "out_of_range",
                format!("{name} may be at most {max}"),
            ));
        }
    };
    check("timeout_seconds", drain.timeout_seconds, MAX_DRAIN_TIMEOUT_SECONDS);
    check("grace_period_seconds", drain.grace_period_seconds, MAX_GRACE_PERIOD_SECONDS);
    if drain.timeout_seconds == Some(0) {
        problems.push(ErrorDetail::new(
            format!("{prefix}.timeout_seconds"),
            "out_of_range",
            "timeout_seconds must be at least 1",
        ));
    }
    if drain.skip_pod_selector.as_ref().is_some_and(|s| s.len() > MAX_SELECTOR_BYTES) {
        problems.push(too_long(&format!("{prefix}.skip_pod_selector"), MAX_SELECTOR_BYTES));
    }
    problems
}

fn too_many(field: &str, max: usize) -> ErrorDetail {
    ErrorDetail::new(field, "too_many", format!("at most {max} entries"))
}

fn too_long(field: &str, max: usize) -> ErrorDetail {
    ErrorDetail::new(field, "too_long", format!("at most {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(drain: serde_json::Value) -> UpgradeRequest {
        serde_json::from_value(serde_json::json!({
            "target_version": "v1.31.0",
            "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "ab".repeat(32)}],
            "drain": drain,
        }))
        .expect("parses")
    }

    fn fields(problems: &[ErrorDetail]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn limits_are_inclusive_and_one_past_is_refused() {
        let at = request(serde_json::json!({"timeout_seconds": 86_400, "grace_period_seconds": 3_600}));
        assert!(upgrade_problems(&at).is_empty());
        let past = request(serde_json::json!({"timeout_seconds": 86_401, "grace_period_seconds": 3_601}));
        assert_eq!(fields(&upgrade_problems(&past)), ["drain.timeout_seconds", "drain.grace_period_seconds"]);
        let huge = request(serde_json::json!({"timeout_seconds": u64::MAX}));
        assert_eq!(upgrade_problems(&huge)[0].code, "out_of_range");
        let zero = request(serde_json::json!({"timeout_seconds": 0}));
        assert_eq!(fields(&upgrade_problems(&zero)), ["drain.timeout_seconds"]);
    }

    #[test]
    fn removed_flags_are_bounded_and_must_be_flags() {
        let mut images = request(serde_json::Value::Null);
        let image = format!("registry.k8s.io/kube-apiserver:v1.31.0@sha256:{}", "ab".repeat(32));
        images.images = serde_json::from_value(serde_json::json!([
            {"component": "kube-apiserver", "image": image, "remove_flags": ["--insecure-port", "insecure-port", "--a b"]},
        ]))
        .expect("parses");
        let problems = upgrade_problems(&images);
        assert_eq!(fields(&problems), ["images[0].remove_flags[1]", "images[0].remove_flags[2]"]);
        images.images[0].remove_flags = vec!["--x".to_owned(); MAX_REMOVED_FLAGS + 1];
        assert_eq!(upgrade_problems(&images)[0].code, "too_many");
    }

    #[test]
    fn long_strings_and_long_lists_are_refused() {
        let mut long = request(serde_json::Value::Null);
        long.artifacts[0].source = format!("https://mirror.example/{}", "a".repeat(MAX_SOURCE_BYTES));
        long.artifacts[0].signature = Some("A".repeat(MAX_SIGNATURE_BYTES + 1));
        assert_eq!(fields(&upgrade_problems(&long)), ["artifacts[0].source", "artifacts[0].signature"]);
        let mut many = request(serde_json::Value::Null);
        many.artifacts = vec![many.artifacts[0].clone(); MAX_ARTIFACTS + 1];
        assert_eq!(upgrade_problems(&many)[0].code, "too_many");
    }
}
