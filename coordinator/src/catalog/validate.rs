//! The catalog's raw TOML shape and its checks: every problem of the file
//! reported at once, each naming its entry and line
//! (`releases[2].artifacts[0].sha256 (line 31): ...`).

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use toml::Spanned;
use upkeep_common::Version;
use upkeep_common::ids::{ComponentName, IdError};

use super::select::names_patch;
use super::{
    Catalog, MAX_ARTIFACTS_PER_RELEASE, MAX_CHANNELS_PER_RELEASE, MAX_IMAGES_PER_RELEASE, MAX_RELEASES,
    MAX_REMOVE_FLAGS, MAX_RISKS_PER_RELEASE, Release, ReleaseArtifact, ReleaseImage, Risk, reference,
};
use crate::toml_problems::{self, Lines};

#[derive(Debug, Deserialize)]
struct RawCatalog {
    channel: String,
    #[serde(default)]
    releases: Vec<Spanned<RawRelease>>,
}

#[derive(Debug, Deserialize)]
struct RawRelease {
    version: String,
    channels: Vec<String>,
    #[serde(default)]
    artifacts: Vec<Spanned<RawArtifact>>,
    #[serde(default)]
    images: Vec<Spanned<RawImage>>,
    #[serde(default)]
    risks: Vec<Spanned<RawRisk>>,
}

#[derive(Debug, Deserialize)]
struct RawArtifact {
    component: String,
    arch: String,
    source: String,
    sha256: String,
    #[serde(default)]
    signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawImage {
    component: String,
    image: String,
    #[serde(default)]
    remove_flags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawRisk {
    name: String,
    message: String,
}

/// The problems found so far, and where each line of the text starts.
struct Checker {
    lines: Lines,
    problems: Vec<String>,
}

impl Checker {
    /// `key (line N)` for an entry that starts at byte `start`.
    fn at(&self, key: &str, start: usize) -> String {
        format!("{key} (line {})", self.lines.line_of(start))
    }

    fn check<T>(&mut self, key: impl FnOnce() -> String, result: Result<T, String>) -> Option<T> {
        result.map_err(|why| self.problems.push(format!("{}: {why}", key()))).ok()
    }

    fn bounded<T>(&mut self, key: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.problems.push(format!("{key}: {} entries, at most {max} are accepted", items.len()));
        }
    }
}

/// Parses catalog text into a [`Catalog`], or every problem it has.
pub fn parse(text: &str) -> Result<Catalog, Vec<String>> {
    let (raw, problems) = toml_problems::read::<RawCatalog>(text);
    let mut checker = Checker { lines: Lines::of(text), problems };
    let Some(raw) = raw else { return Err(checker.problems) };
    let channel = checker.check(|| "channel".to_owned(), reference::channel(&raw.channel)).map(|()| raw.channel);
    checker.bounded("releases", &raw.releases, MAX_RELEASES);
    let mut releases: Vec<Release> = Vec::new();
    let mut seen: HashMap<Version, String> = HashMap::new();
    for (index, entry) in raw.releases.into_iter().enumerate() {
        let key = checker.at(&format!("releases[{index}]"), entry.span().start);
        let Some(release) = release(&mut checker, &key, entry.into_inner()) else { continue };
        match seen.get(&release.version) {
            Some(first) => checker.problems.push(format!("{key}.version: {} is also {first}", release.version)),
            None => {
                seen.insert(release.version.clone(), key);
                releases.push(release);
            }
        }
    }
    match channel {
        Some(channel) if checker.problems.is_empty() => {
            releases.sort_by(|a, b| b.version.cmp(&a.version));
            Ok(Catalog { channel, releases })
        }
        _ => Err(checker.problems),
    }
}

/// A release's version: parsed, with its patch number written out.
fn release_version(text: &str) -> Result<Version, String> {
    let version: Version = text.parse().map_err(|error| format!("{error}"))?;
    if !names_patch(text) {
        return Err(format!("{text:?} names no patch; a release is MAJOR.MINOR.PATCH"));
    }
    Ok(version)
}

fn release(checker: &mut Checker, key: &str, raw: RawRelease) -> Option<Release> {
    let version = checker.check(|| format!("{key}.version"), release_version(&raw.version));
    let channels = channels(checker, key, raw.channels);
    checker.bounded(&format!("{key}.artifacts"), &raw.artifacts, MAX_ARTIFACTS_PER_RELEASE);
    checker.bounded(&format!("{key}.images"), &raw.images, MAX_IMAGES_PER_RELEASE);
    checker.bounded(&format!("{key}.risks"), &raw.risks, MAX_RISKS_PER_RELEASE);
    if raw.artifacts.is_empty() {
        checker.problems.push(format!("{key}.artifacts: a release needs at least one [[releases.artifacts]]"));
    }
    let before = checker.problems.len();
    let mut artifacts = Vec::new();
    let mut pairs: HashMap<(ComponentName, String), String> = HashMap::new();
    for (index, entry) in raw.artifacts.into_iter().enumerate() {
        let at = checker.at(&format!("{key}.artifacts[{index}]"), entry.span().start);
        if let Some(artifact) = artifact(checker, &at, entry.into_inner()) {
            let pair = (artifact.component.clone(), artifact.arch.clone());
            if let Some(first) = pairs.get(&pair) {
                checker
                    .problems
                    .push(format!("{at}: a second {} artifact for {} (the first is {first})", pair.0, pair.1));
            } else {
                pairs.insert(pair, at);
                artifacts.push(artifact);
            }
        }
    }
    let mut images: Vec<ReleaseImage> = Vec::new();
    for (index, entry) in raw.images.into_iter().enumerate() {
        let at = checker.at(&format!("{key}.images[{index}]"), entry.span().start);
        if let Some(image) = image(checker, &at, entry.into_inner()) {
            if images.iter().any(|other| other.component == image.component) {
                checker.problems.push(format!("{at}.component: a second image for {}", image.component));
            } else {
                images.push(image);
            }
        }
    }
    let mut risks: Vec<Risk> = Vec::new();
    for (index, entry) in raw.risks.into_iter().enumerate() {
        let at = checker.at(&format!("{key}.risks[{index}]"), entry.span().start);
        let raw = entry.into_inner();
        if checker.check(|| at.clone(), reference::risk(&raw.name, &raw.message)).is_none() {
            continue;
        }
        if risks.iter().any(|other| other.name == raw.name) {
            checker.problems.push(format!("{at}.name: {} is listed twice", raw.name));
        } else {
            risks.push(Risk { name: raw.name, message: raw.message });
        }
    }
    if checker.problems.len() > before {
        return None;
    }
    Some(Release { version: version?, channels: channels?, artifacts, images, risks })
}

fn channels(checker: &mut Checker, key: &str, raw: Vec<String>) -> Option<Vec<String>> {
    let field = format!("{key}.channels");
    if raw.is_empty() {
        checker.problems.push(format!("{field}: a release is in at least one channel"));
        return None;
    }
    checker.bounded(&field, &raw, MAX_CHANNELS_PER_RELEASE);
    let before = checker.problems.len();
    let mut seen = BTreeSet::new();
    for (index, channel) in raw.iter().enumerate() {
        if checker.check(|| format!("{field}[{index}]"), reference::channel(channel)).is_some() && !seen.insert(channel)
        {
            checker.problems.push(format!("{field}[{index}]: {channel} is listed twice"));
        }
    }
    (checker.problems.len() == before).then_some(raw)
}

fn artifact(checker: &mut Checker, at: &str, raw: RawArtifact) -> Option<ReleaseArtifact> {
    let component =
        checker.check(|| format!("{at}.component"), raw.component.parse().map_err(|e: IdError| e.to_string()));
    let arch = checker.check(|| format!("{at}.arch"), reference::arch(&raw.arch));
    let source = checker.check(|| format!("{at}.source"), reference::source(&raw.source));
    let sha256 = checker.check(|| format!("{at}.sha256"), raw.sha256.parse().map_err(|e: IdError| e.to_string()));
    let signature = raw.signature.as_deref().map(reference::signature).transpose();
    let signature = checker.check(|| format!("{at}.signature"), signature);
    let (Some(component), Some(()), Some(()), Some(sha256), Some(_)) = (component, arch, source, sha256, signature)
    else {
        return None;
    };
    Some(ReleaseArtifact { component, arch: raw.arch, source: raw.source, sha256, signature: raw.signature })
}

fn image(checker: &mut Checker, at: &str, raw: RawImage) -> Option<ReleaseImage> {
    let component =
        checker.check(|| format!("{at}.component"), raw.component.parse().map_err(|e: IdError| e.to_string()));
    let image = checker.check(|| format!("{at}.image"), reference::image(&raw.image));
    let before = checker.problems.len();
    checker.bounded(&format!("{at}.remove_flags"), &raw.remove_flags, MAX_REMOVE_FLAGS);
    for (index, flag) in raw.remove_flags.iter().enumerate() {
        checker.check(|| format!("{at}.remove_flags[{index}]"), reference::flag(flag));
    }
    let flags = (checker.problems.len() == before).then_some(());
    let (Some(component), Some(image), Some(())) = (component, image, flags) else { return None };
    Some(ReleaseImage { component, image, remove_flags: raw.remove_flags })
}
