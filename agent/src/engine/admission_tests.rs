//! Tests of admission: field checks, the version rules, and what force overrides.

use super::*;
use upkeep_common::api::Artifact;

fn config() -> AgentConfig {
    crate::config::sample_config(&["kubelet", "kube-proxy"])
}

fn request(target: &str, components: &[&str], force: bool) -> UpgradeRequest {
    UpgradeRequest {
        target_version: target.parse().expect("valid"),
        artifacts: components
            .iter()
            .map(|c| Artifact {
                component: c.parse().expect("valid"),
                source: format!("file:///srv/{c}"),
                sha256: "ab".repeat(32).parse().expect("valid"),
                signature: None,
            })
            .collect(),
        request_token: None,
        force,
        drain: None,
        dry_run: false,
        stage_only: false,
        images: Vec::new(),
        control_plane_version: None,
    }
}

fn facts<'a>(
    observed: &'a dyn Fn(&str) -> Option<Version>,
    previous: &'a dyn Fn(&str) -> Option<Version>,
    control_plane: Option<&str>,
) -> NodeFacts<'a> {
    NodeFacts {
        observed,
        previous,
        degraded: None,
        reported_control_plane: control_plane.map(|v| v.parse().expect("valid")),
    }
}

const V1302: fn(&str) -> Option<Version> = |_| "v1.30.2".parse().ok();
const NONE: fn(&str) -> Option<Version> = |_| None;

#[test]
fn field_problems_are_all_reported() {
    let mut bad = request("v1.30.3", &["kubelet", "kubelet", "containerd"], false);
    bad.artifacts[0].source = "http://insecure/kubelet".into();
    bad.artifacts[1].signature = Some("not base64".into());
    let error = check_fields(&config(), &bad).expect_err("refused");
    let codes: Vec<&str> = error.error.details.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["duplicate", "unknown_component", "unsupported_source", "invalid_format"]);
    assert!(check_fields(&config(), &request("v1.30.3", &[], false)).is_err());
}

fn with_api_server() -> AgentConfig {
    let mut config = config();
    let text = "node_name = \"cp-1\"\nrole = \"control-plane\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"/s\"\n\
        [tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_ca = \"/ca\"\n[[components]]\nname = \"kube-apiserver\"\n\
        kind = \"static-pod\"\nmanifest = \"/etc/kubernetes/manifests/kube-apiserver.yaml\"\n";
    config.components.extend(AgentConfig::parse(text).expect("valid").components);
    config
}

fn image(component: &str, tag: &str) -> upkeep_common::api::ImageArtifact {
    upkeep_common::api::ImageArtifact {
        component: component.parse().expect("valid"),
        image: format!("registry.k8s.io/{component}:{tag}@sha256:{}", "ab".repeat(32)).parse().expect("pinned"),
        remove_flags: Vec::new(),
    }
}

#[test]
fn images_go_to_static_pods_and_binaries_to_artifacts() {
    let config = with_api_server();
    let mut mixed = request("v1.30.3", &["kube-apiserver"], false);
    mixed.images = vec![image("kubelet", "v1.30.3"), image("kube-apiserver", "v1.30.3")];
    let error = check_fields(&config, &mixed).expect_err("refused");
    let details: Vec<(&str, &str)> = error.error.details.iter().map(|d| (d.field.as_str(), d.code.as_str())).collect();
    assert_eq!(
        details,
        [
            ("artifacts[0].component", "not_a_binary"),
            ("images[0].component", "not_a_static_pod"),
            ("images[1].component", "duplicate"),
        ]
    );
    let mut images_only = request("v1.30.3", &[], false);
    images_only.images = vec![image("kube-apiserver", "v1.30.3")];
    assert!(check_fields(&config, &images_only).is_ok(), "images alone are an upgrade");
}

#[test]
fn a_static_pod_moves_to_its_images_version() {
    let config = with_api_server();
    let mut upgrade = request("v1.30.3", &[], false);
    upgrade.images = vec![image("kube-apiserver", "v1.31.0")];
    let admitted = admit(&config, &upgrade, &facts(&V1302, &NONE, None)).expect("next minor");
    assert_eq!(admitted.components[0].to_version, "v1.31.0".parse().expect("valid"));
    assert_eq!(admitted.components[0].requested, Requested::Image(0));
    upgrade.images = vec![image("kube-apiserver", "v1.32.0")];
    let skipping = admit(&config, &upgrade, &facts(&V1302, &NONE, None)).expect_err("skips a minor");
    assert_eq!(skipping.error.details[0].field, "images[0].component");
}

#[test]
fn a_file_source_outside_the_roots_is_a_detail_on_its_field() {
    let mut outside = request("v1.30.3", &["kubelet", "kube-proxy"], false);
    outside.artifacts[1].source = "file:///srv/../etc/shadow".into();
    let error = check_fields(&config(), &outside).expect_err("refused");
    assert_eq!(error.error.code, ErrorCode::ValidationFailed);
    let details: Vec<(&str, &str)> = error.error.details.iter().map(|d| (d.field.as_str(), d.code.as_str())).collect();
    assert_eq!(details, [("artifacts[1].source", "source_not_allowed")]);
    let mut no_roots = config();
    no_roots.artifacts.file_roots.clear();
    let error = check_fields(&no_roots, &request("v1.30.3", &["kubelet"], false)).expect_err("refused");
    assert_eq!(error.error.details[0].code, "source_not_allowed");
}

#[test]
fn patch_and_next_minor_are_admitted_and_equal_is_a_no_op() {
    let config = config();
    let admitted = admit(&config, &request("v1.30.3", &["kubelet"], false), &facts(&V1302, &NONE, None)).expect("ok");
    assert_eq!(admitted.components.len(), 1);
    assert_eq!(admitted.notes.len(), 1, "skew unknown is noted");
    let same = admit(&config, &request("v1.30.2", &["kubelet", "kube-proxy"], false), &facts(&V1302, &NONE, None));
    assert!(same.expect("ok").components.is_empty());
}

#[test]
fn refusals_are_422_version_refused_unless_forced() {
    let config = config();
    let skip =
        admit(&config, &request("v1.32.0", &["kubelet"], false), &facts(&V1302, &NONE, None)).expect_err("refused");
    assert_eq!(skip.error.code, ErrorCode::VersionRefused);
    assert_eq!(skip.error.details[0].code, "skips_minor");
    let forced = admit(&config, &request("v1.32.0", &["kubelet"], true), &facts(&V1302, &NONE, None)).expect("forced");
    assert_eq!(forced.accepted_risks[0].code, "incremental_rule");
    let skew = admit(&config, &request("v1.31.0", &["kubelet"], false), &facts(&V1302, &NONE, Some("v1.30.5")));
    assert_eq!(skew.expect_err("skew").error.details[0].code, "skew");
    let previous = |_: &str| "v1.29.9".parse().ok();
    let back = admit(&config, &request("v1.29.9", &["kubelet"], false), &facts(&V1302, &previous, None));
    assert_eq!(back.expect("rollback target allowed").components.len(), 1);
}

#[test]
fn degraded_nodes_and_unknown_versions_need_force() {
    let config = config();
    let mut node = facts(&V1302, &NONE, None);
    node.degraded = Some("rolled back");
    let refused = admit(&config, &request("v1.30.3", &["kubelet"], false), &node).expect_err("degraded");
    assert_eq!(refused.error.code, ErrorCode::Conflict);
    assert!(admit(&config, &request("v1.30.3", &["kubelet"], true), &node).is_ok());
    let unknown = admit(&config, &request("v1.30.3", &["kubelet"], false), &facts(&NONE, &NONE, None));
    assert_eq!(unknown.expect_err("unknown").error.code, ErrorCode::DependencyUnavailable);
}

fn claiming(target: &str, claimed: &str, force: bool) -> UpgradeRequest {
    let mut request = request(target, &["kubelet"], force);
    request.control_plane_version = Some(claimed.parse().expect("valid"));
    request
}

#[test]
fn a_claimed_control_plane_newer_than_the_api_server_needs_force() {
    let config = config();
    let api_server = facts(&V1302, &NONE, Some("v1.30.5"));
    let newer = admit(&config, &claiming("v1.31.0", "v1.31.4", false), &api_server).expect_err("refused");
    assert_eq!(newer.error.code, ErrorCode::VersionRefused);
    let codes: Vec<&str> = newer.error.details.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["newer_than_api_server"]);
    let forced = admit(&config, &claiming("v1.31.0", "v1.31.4", true), &api_server).expect("forced");
    assert_eq!(forced.accepted_risks[0].code, "control_plane_claim");
    let older = admit(&config, &claiming("v1.30.3", "v1.30.3", false), &api_server).expect("older claim");
    assert!(older.accepted_risks.is_empty());
    let newer_api_server = facts(&V1302, &NONE, Some("v1.31.5"));
    let stricter =
        admit(&config, &claiming("v1.31.0", "v1.30.9", false), &newer_api_server).expect_err("stricter claim");
    assert_eq!(stricter.error.details[0].code, "skew");
}

#[test]
fn the_skew_rule_follows_the_config_key_not_the_name() {
    let mut config = config();
    let api_server = facts(&V1302, &NONE, Some("v1.30.5"));
    assert!(admit(&config, &request("v1.31.0", &["kube-proxy"], false), &api_server).is_err());
    for component in &mut config.components {
        component.kubernetes_skew = false;
    }
    let unchecked = admit(&config, &request("v1.31.0", &["kube-proxy"], false), &api_server);
    assert!(unchecked.expect("no skew rule").accepted_risks.is_empty());
}

#[test]
fn numbers_out_of_bounds_are_named() {
    let mut huge = request("v1.30.3", &["kubelet"], false);
    huge.drain = Some(upkeep_common::api::DrainOptions { timeout_seconds: Some(u64::MAX), ..Default::default() });
    let error = check_fields(&config(), &huge).expect_err("refused");
    assert_eq!(error.error.code, ErrorCode::ValidationFailed);
    assert_eq!(error.error.details[0].field, "drain.timeout_seconds");
}
