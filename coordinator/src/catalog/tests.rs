//! Tests of the catalog's parsing and selection, and the sample catalog the
//! other files' tests share.

use upkeep_common::Version;

use super::*;

/// A catalog with releases in two channels, one with a risk, one with an
/// architecture missing a component.
pub(crate) const SAMPLE: &str = r#"
channel = "stable"

[[releases]]
version = "1.30.5"
channels = ["stable"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.30.5/amd64/kubelet"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"

[[releases]]
version = "1.31.2"
channels = ["stable", "fast"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.31.2/amd64/kubelet"
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
signature = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
[[releases.artifacts]]
component = "kube-proxy"
arch = "amd64"
source = "file:///srv/k8s/v1.31.2/amd64/kube-proxy"
sha256 = "3333333333333333333333333333333333333333333333333333333333333333"
[[releases.artifacts]]
component = "kubelet"
arch = "arm64"
source = "https://mirror.example/k8s/v1.31.2/arm64/kubelet"
sha256 = "4444444444444444444444444444444444444444444444444444444444444444"
[[releases.images]]
component = "kube-apiserver"
image = "registry.k8s.io/kube-apiserver:v1.31.2@sha256:5555555555555555555555555555555555555555555555555555555555555555"
remove_flags = ["--some-removed-flag"]

[[releases]]
version = "1.31.1"
channels = ["stable"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.31.1/amd64/kubelet"
sha256 = "6666666666666666666666666666666666666666666666666666666666666666"

[[releases]]
version = "1.31.3"
channels = ["fast"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.31.3/amd64/kubelet"
sha256 = "7777777777777777777777777777777777777777777777777777777777777777"

[[releases]]
version = "1.32.0"
channels = ["stable"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.32.0/amd64/kubelet"
sha256 = "8888888888888888888888888888888888888888888888888888888888888888"
[[releases.risks]]
name = "CgroupV1Removed"
message = "nodes on cgroup v1 will not start kubelet 1.32"

[[releases]]
version = "1.33.0"
channels = ["stable"]
[[releases.artifacts]]
component = "kubelet"
arch = "amd64"
source = "https://mirror.example/k8s/v1.33.0/amd64/kubelet"
sha256 = "9999999999999999999999999999999999999999999999999999999999999999"
"#;

fn v(text: &str) -> Version {
    text.parse().expect("test version")
}

fn sample() -> Catalog {
    Catalog::parse(SAMPLE).expect("the sample is valid")
}

fn problems(text: &str) -> Vec<String> {
    match Catalog::parse(text) {
        Err(CatalogError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The 1-based line of the first line of SAMPLE that holds `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|line| line.contains(needle)).expect("needle in text") + 1
}

#[test]
fn the_sample_parses_newest_first() {
    let catalog = sample();
    assert_eq!(catalog.channel, "stable");
    let versions: Vec<String> = catalog.releases.iter().map(|r| r.version.to_string()).collect();
    assert_eq!(versions, ["1.33.0", "1.32.0", "1.31.3", "1.31.2", "1.31.1", "1.30.5"]);
    let release = catalog.resolve("1.31.2").expect("in the catalog");
    assert_eq!(release.images[0].remove_flags, ["--some-removed-flag"]);
    assert!(release.artifacts[0].signature.is_some());
    assert_eq!(catalog.releases[1].risks[0].name, "CgroupV1Removed");
}

#[test]
fn every_problem_is_reported_at_once_with_its_entry_and_line() {
    let text = SAMPLE
        .replace("2222222222222222222222222222222222222222222222222222222222222222", "not-a-digest")
        .replace("v1.31.2@sha256:5555555555555555555555555555555555555555555555555555555555555555", "v1.31.2")
        .replace("channels = [\"stable\", \"fast\"]", "channels = [\"stable\", \"fast\"]\ncolour = \"red\"")
        .replace("file:///srv/k8s", "http://mirror.example");
    let found = problems(&text);
    let release = line_of(&text, "version = \"1.31.2\"") - 1;
    let first_artifact = line_of(&text, "not-a-digest") - 4;
    let second_artifact = line_of(&text, "http://mirror.example") - 3;
    let image = line_of(&text, "kube-apiserver:v1.31.2") - 2;
    assert_eq!(found.len(), 4, "{found:#?}");
    assert_eq!(found[0], format!("releases[1].colour (line {}): unknown key", line_of(&text, "colour")));
    assert!(
        found[1].starts_with(&format!("releases[1] (line {release}).artifacts[0] (line {first_artifact}).sha256: ")),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(&format!("releases[1] (line {release}).artifacts[1] (line {second_artifact}).source: "))
    );
    assert!(found[2].contains("neither https:// nor file://"), "{}", found[2]);
    assert!(found[3].starts_with(&format!("releases[1] (line {release}).images[0] (line {image}).image: ")));
    assert!(found[3].contains("pinned by digest"), "{}", found[3]);
}

#[test]
fn a_version_is_listed_once_and_a_component_once_per_arch() {
    let twice = format!(
        "{SAMPLE}\n[[releases]]\nversion = \"v1.31.2\"\nchannels = [\"fast\"]\n[[releases.artifacts]]\ncomponent = \"kubelet\"\narch = \"amd64\"\nsource = \"file:///srv/k\"\nsha256 = \"{}\"\n",
        "a".repeat(64)
    );
    let found = problems(&twice);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("releases[6] (line"), "{found:#?}");
    assert!(found[0].contains(".version: v1.31.2 is also releases[1] (line"), "{found:#?}");

    let same_pair = SAMPLE.replace("component = \"kube-proxy\"", "component = \"kubelet\"");
    let found = problems(&same_pair);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("artifacts[1]") && found[0].contains("a second kubelet artifact for amd64"),
        "{found:#?}"
    );
}

#[test]
fn values_out_of_shape_are_refused() {
    let no_patch = problems(&SAMPLE.replace("version = \"1.33.0\"", "version = \"1.33\""));
    assert!(no_patch[0].contains(".version: \"1.33\" names no patch"), "{no_patch:?}");
    let bad_channel = problems(&SAMPLE.replace("channel = \"stable\"", "channel = \"Stable!\""));
    assert!(bad_channel[0].starts_with("channel: "), "{bad_channel:?}");
    let no_channel = problems(&SAMPLE.replace("channels = [\"fast\"]", "channels = []"));
    assert!(no_channel[0].contains("releases[3]") && no_channel[0].contains("at least one channel"), "{no_channel:?}");
    let channels =
        format!("[{}]", (0..=MAX_CHANNELS_PER_RELEASE).map(|i| format!("\"c{i}\"")).collect::<Vec<_>>().join(","));
    let many = problems(&SAMPLE.replace("channels = [\"fast\"]", &format!("channels = {channels}")));
    assert!(many[0].contains("17 entries, at most 16"), "{many:?}");
    let short_signature = problems(&SAMPLE.replace("Pw==", ""));
    assert!(short_signature[0].contains(".signature: "), "{short_signature:?}");
    let wrong_type = problems(&SAMPLE.replace("version = \"1.33.0\"", "version = 1.33"));
    assert_eq!(wrong_type.len(), 1);
    assert!(
        wrong_type[0].starts_with(&format!("line {}: ", line_of(SAMPLE, "version = \"1.33.0\""))),
        "{wrong_type:?}"
    );
}

#[test]
fn major_minor_resolves_to_the_newest_patch_of_the_channel() {
    let catalog = sample();
    assert_eq!(catalog.resolve("1.31").expect("in stable").version, v("1.31.2"), "1.31.3 is only in fast");
    assert_eq!(catalog.resolve("v1.31.1").expect("exact").version, v("1.31.1"));
    let fast = Catalog { channel: "fast".to_owned(), ..catalog.clone() };
    assert_eq!(fast.resolve("1.31").expect("in fast").version, v("1.31.3"));
    let absent = catalog.resolve("1.29").expect_err("no 1.29");
    assert_eq!(absent, ResolveError::NotInCatalog { requested: "1.29".to_owned() });
    assert_eq!(absent.code(), "version_not_in_catalog");
    assert!(absent.detail("target_version").message.contains("1.29"));
    assert!(matches!(catalog.resolve("1.31.9"), Err(ResolveError::NotInCatalog { .. })));
    let elsewhere = catalog.resolve("1.31.3").expect_err("only in fast");
    assert_eq!(elsewhere.code(), "version_not_in_channel");
    assert!(elsewhere.to_string().contains("not in channel stable (only in fast)"), "{elsewhere}");
    assert!(matches!(catalog.resolve("banana"), Err(ResolveError::Invalid { .. })));
    assert!(matches!(catalog.resolve("1.31-eks"), Err(ResolveError::Invalid { .. })));
}

#[test]
fn updates_follow_the_incremental_rule_and_the_channel() {
    let catalog = sample();
    let names = |releases: &[&Release]| releases.iter().map(|r| r.version.to_string()).collect::<Vec<_>>();
    let from_1_30 = catalog.updates_from(&v("1.30.5"));
    assert_eq!(names(&from_1_30.available), ["1.31.2", "1.31.1"], "no 1.31.3 (fast), no 1.32 (skips a minor)");
    assert!(from_1_30.conditional.is_empty());
    let from_1_31 = catalog.updates_from(&v("1.31.1"));
    assert_eq!(names(&from_1_31.available), ["1.31.2"]);
    assert_eq!(names(&from_1_31.conditional), ["1.32.0"]);
    assert_eq!(from_1_31.conditional[0].risks[0].name, "CgroupV1Removed");
    let ahead = catalog.updates_from(&v("1.31.9"));
    assert!(ahead.available.is_empty(), "1.33 skips 1.32 and older patches are downgrades");
    assert_eq!(names(&ahead.conditional), ["1.32.0"]);
    let without_1_31 =
        Catalog { releases: catalog.releases.iter().filter(|r| r.version.minor() != 31).cloned().collect(), ..catalog };
    let stuck = without_1_31.updates_from(&v("1.30.5"));
    assert!(stuck.available.is_empty() && stuck.conditional.is_empty(), "1.32 is not reachable from 1.30");
}

#[test]
fn a_node_gets_every_component_for_its_arch() {
    let catalog = sample();
    let release = catalog.resolve("1.31.2").expect("release");
    let components: Vec<&str> = release.components().iter().map(|c| c.as_str()).collect();
    assert_eq!(components, ["kube-proxy", "kubelet"]);
    let amd64 = release.artifacts_for("amd64").expect("complete");
    assert_eq!(amd64.len(), 2);
    assert_eq!(amd64[1].source, "file:///srv/k8s/v1.31.2/amd64/kube-proxy");
    assert_eq!(amd64[0].sha256.as_str(), "2".repeat(64));
    let arm64 = release.artifacts_for("arm64").expect_err("no kube-proxy for arm64");
    assert_eq!(arm64.missing.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["kube-proxy"]);
    let none = release.artifacts_for("s390x").expect_err("nothing for s390x");
    assert_eq!(
        none.to_string(),
        "release 1.31.2 has no kube-proxy, kubelet artifact for s390x (it has artifacts for amd64, arm64)"
    );
}
