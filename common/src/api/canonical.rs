//! The canonical text of a write request: one line per field, in a fixed order,
//! each value in one fixed spelling, so that its digest stays the same across
//! agent versions. An agent compares the digests of two requests that carry the
//! same request token to tell a retry from a different request; a new field
//! joins the text only when it is set, so old requests keep their digest.

use crate::api::operation::OperationKind;
use crate::api::request::{DrainOptions, DrainTimeoutAction, UpgradeRequest};

/// The canonical text of an upgrade request (its request token left out: it is the key).
pub fn upgrade_text(request: &UpgradeRequest) -> String {
    let mut lines = vec!["upkeep upgrade request 1".to_owned()];
    lines.push(format!("target_version {}", quoted(&request.target_version.to_string())));
    for artifact in &request.artifacts {
        lines.push(format!(
            "artifact {} {} {} {}",
            quoted(artifact.component.as_str()),
            quoted(&artifact.source),
            artifact.sha256.as_str(),
            artifact.signature.as_deref().map_or_else(|| "-".to_owned(), quoted)
        ));
    }
    for image in &request.images {
        let removed: Vec<String> = image.remove_flags.iter().map(|flag| quoted(flag)).collect();
        lines.push(format!(
            "image {} {} remove_flags [{}]",
            quoted(image.component.as_str()),
            quoted(image.image.as_str()),
            removed.join(" ")
        ));
    }
    flag(&mut lines, "force", request.force);
    flag(&mut lines, "dry_run", request.dry_run);
    flag(&mut lines, "stage_only", request.stage_only);
    if let Some(version) = &request.control_plane_version {
        lines.push(format!("control_plane_version {}", quoted(&version.to_string())));
    }
    if let Some(drain) = &request.drain {
        drain_lines(&mut lines, drain);
    }
    lines.join("\n")
}

/// The canonical text of a cordon, uncordon, drain or rollback request.
pub fn node_operation_text(kind: OperationKind, drain: Option<&DrainOptions>) -> String {
    let name = match kind {
        OperationKind::Upgrade => "upgrade",
        OperationKind::Rollback => "rollback",
        OperationKind::Cordon => "cordon",
        OperationKind::Uncordon => "uncordon",
        OperationKind::Drain => "drain",
    };
    let mut lines = vec![format!("upkeep {name} request 1")];
    if let Some(drain) = drain {
        drain_lines(&mut lines, drain);
    }
    lines.join("\n")
}

fn drain_lines(lines: &mut Vec<String>, drain: &DrainOptions) {
    if let Some(seconds) = drain.timeout_seconds {
        lines.push(format!("drain.timeout_seconds {seconds}"));
    }
    if let Some(seconds) = drain.grace_period_seconds {
        lines.push(format!("drain.grace_period_seconds {seconds}"));
    }
    if let Some(allow) = drain.allow_local_storage {
        lines.push(format!("drain.allow_local_storage {allow}"));
    }
    if let Some(selector) = &drain.skip_pod_selector {
        lines.push(format!("drain.skip_pod_selector {}", quoted(selector)));
    }
    if let Some(action) = drain.on_timeout {
        let action = match action {
            DrainTimeoutAction::Fail => "fail",
            DrainTimeoutAction::Force => "force",
        };
        lines.push(format!("drain.on_timeout {action}"));
    }
}

fn flag(lines: &mut Vec<String>, name: &str, value: bool) {
    if value {
        lines.push(format!("{name} true"));
    }
}

/// A string as a JSON string literal: quotes, backslashes and control
/// characters escaped, so no value can imitate a line or a separator.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> UpgradeRequest {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn the_text_is_fixed() {
        let text = upgrade_text(&request(serde_json::json!({
            "target_version": "v1.31.0",
            "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "ab".repeat(32)}],
            "request_token": "t-1",
            "drain": {"timeout_seconds": 300, "on_timeout": "fail"},
            "force": true,
        })));
        let expected = [
            "upkeep upgrade request 1",
            "target_version \"v1.31.0\"",
            &format!("artifact \"kubelet\" \"file:///srv/kubelet\" {} -", "ab".repeat(32)),
            "force true",
            "drain.timeout_seconds 300",
            "drain.on_timeout fail",
        ]
        .join("\n");
        assert_eq!(text, expected);
    }

    #[test]
    fn field_order_and_defaults_spelled_out_do_not_change_the_text() {
        let a = request(serde_json::json!({
            "target_version": "v1.31.0", "request_token": "t-1",
            "artifacts": [{"component": "kubelet", "source": "file:///srv/kubelet", "sha256": "ab".repeat(32)}],
        }));
        let b = request(serde_json::json!({
            "dry_run": false, "force": false, "stage_only": false, "request_token": "t-2",
            "artifacts": [{"sha256": "ab".repeat(32), "source": "file:///srv/kubelet", "component": "kubelet"}],
            "target_version": "v1.31.0",
        }));
        assert_eq!(upgrade_text(&a), upgrade_text(&b));
        let mut c = a.clone();
        c.artifacts[0].source = "file:///srv/kubelet\" \"x".into();
        assert_ne!(upgrade_text(&a), upgrade_text(&c));
        let line = format!("artifact \"kubelet\" \"file:///srv/kubelet\\\" \\\"x\" {} -", "ab".repeat(32));
        assert_eq!(upgrade_text(&c).lines().nth(2), Some(line.as_str()), "quotes inside a value are escaped");
    }

    #[test]
    fn node_operations_differ_by_kind_and_drain() {
        let drain = DrainOptions { timeout_seconds: Some(60), ..DrainOptions::default() };
        assert_eq!(node_operation_text(OperationKind::Cordon, None), "upkeep cordon request 1");
        assert_ne!(
            node_operation_text(OperationKind::Drain, None),
            node_operation_text(OperationKind::Drain, Some(&drain))
        );
    }
}
