//! The incremental rule and the skew rule (DESIGN.md §2) as pure functions.
//!
//! Both return a typed verdict rather than a boolean, so the agent can report a
//! no-op as skipped and a refusal with its reason, and so `force` can record
//! exactly which rule it overrode.

use serde::{Deserialize, Serialize};

use crate::version::Version;

/// How far kubelet may lag behind kube-apiserver, in minors.
pub const MAX_KUBELET_MINOR_LAG: u64 = 3;

/// What kind of change an allowed upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A newer patch (or vendor suffix) on the same minor.
    Patch,
    /// Exactly the next minor.
    Minor,
    /// Back to the previous completed version.
    Rollback,
}

/// Why the incremental rule refuses a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum IncrementalRefusal {
    /// The target is older than the current version and is not the previous
    /// completed version.
    #[error("{target} is older than {current}; only a rollback to the previous completed version may go back")]
    Downgrade {
        /// The version now installed.
        current: Version,
        /// The requested version.
        target: Version,
    },
    /// The target is more than one minor ahead.
    #[error("{target} skips minors after {current}; upgrade one minor at a time")]
    SkipsMinor {
        /// The version now installed.
        current: Version,
        /// The requested version.
        target: Version,
    },
    /// The target has another major.
    #[error("{target} changes the major version of {current}")]
    MajorChange {
        /// The version now installed.
        current: Version,
        /// The requested version.
        target: Version,
    },
}

/// The verdict of the incremental rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementalVerdict {
    /// The upgrade may go ahead.
    Allowed(StepKind),
    /// The target is what is installed: nothing to do, reported as skipped.
    NoOp,
    /// The rule refuses the target.
    Refused(IncrementalRefusal),
}

/// Applies the incremental rule: a patch bump on the same minor, or a step to
/// exactly the next minor; the same version is a no-op; a downgrade is refused
/// unless it returns to `previous_completed`.
pub fn check_incremental(
    current: &Version,
    target: &Version,
    previous_completed: Option<&Version>,
) -> IncrementalVerdict {
    if target == current {
        return IncrementalVerdict::NoOp;
    }
    if target < current {
        if previous_completed == Some(target) {
            return IncrementalVerdict::Allowed(StepKind::Rollback);
        }
        return IncrementalVerdict::Refused(IncrementalRefusal::Downgrade {
            current: current.clone(),
            target: target.clone(),
        });
    }
    if target.major() != current.major() {
        return IncrementalVerdict::Refused(IncrementalRefusal::MajorChange {
            current: current.clone(),
            target: target.clone(),
        });
    }
    match target.minor() - current.minor() {
        0 => IncrementalVerdict::Allowed(StepKind::Patch),
        1 => IncrementalVerdict::Allowed(StepKind::Minor),
        _ => IncrementalVerdict::Refused(IncrementalRefusal::SkipsMinor {
            current: current.clone(),
            target: target.clone(),
        }),
    }
}

/// Why the skew rule refuses a kubelet version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum SkewRefusal {
    /// kubelet would be newer than kube-apiserver.
    #[error("kubelet {kubelet} would be newer than the control plane {control_plane}")]
    NewerThanControlPlane {
        /// The kubelet version asked for.
        kubelet: Version,
        /// The control plane's (oldest) kube-apiserver version.
        control_plane: Version,
    },
    /// kubelet would be more than [`MAX_KUBELET_MINOR_LAG`] minors behind.
    #[error(
        "kubelet {kubelet} would be more than {MAX_KUBELET_MINOR_LAG} minors older than the control plane {control_plane}"
    )]
    TooFarBehind {
        /// The kubelet version asked for.
        kubelet: Version,
        /// The control plane's (oldest) kube-apiserver version.
        control_plane: Version,
    },
}

/// The verdict of the skew rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkewVerdict {
    /// The kubelet version is within the supported skew.
    Allowed,
    /// The kubelet version breaks the skew policy.
    Refused(SkewRefusal),
}

/// Applies the skew rule: kubelet may never be newer than kube-apiserver (by
/// minor) and at most [`MAX_KUBELET_MINOR_LAG`] minors older.
pub fn check_skew(kubelet: &Version, control_plane: &Version) -> SkewVerdict {
    let refuse_newer =
        || SkewRefusal::NewerThanControlPlane { kubelet: kubelet.clone(), control_plane: control_plane.clone() };
    let refuse_behind = || SkewRefusal::TooFarBehind { kubelet: kubelet.clone(), control_plane: control_plane.clone() };
    match kubelet.major().cmp(&control_plane.major()) {
        std::cmp::Ordering::Greater => SkewVerdict::Refused(refuse_newer()),
        std::cmp::Ordering::Less => SkewVerdict::Refused(refuse_behind()),
        std::cmp::Ordering::Equal if kubelet.minor() > control_plane.minor() => SkewVerdict::Refused(refuse_newer()),
        std::cmp::Ordering::Equal if control_plane.minor() - kubelet.minor() > MAX_KUBELET_MINOR_LAG => {
            SkewVerdict::Refused(refuse_behind())
        }
        std::cmp::Ordering::Equal => SkewVerdict::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(text: &str) -> Version {
        text.parse().expect("test version parses")
    }

    #[test]
    fn incremental_table() {
        use IncrementalVerdict::*;
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            ("v1.30.2", "v1.30.2", None, "noop"),
            ("v1.30.2", "1.30.2", None, "noop"),
            ("v1.30", "v1.30.0", None, "noop"),
            ("v1.30.2", "v1.30.5", None, "patch"),
            ("v1.30.2", "v1.30.2+k3s1", None, "patch"),
            ("v1.30.2", "v1.31.0", None, "minor"),
            ("v1.30.9", "v1.31.0", None, "minor"),
            ("v1.30.2", "v1.32.0", None, "skips"),
            ("v1.30.2", "v2.0.0", None, "major"),
            ("v1.30.2", "v1.30.1", None, "down"),
            ("v1.30.2", "v1.29.9", None, "down"),
            ("v1.30.2", "v1.29.9", Some("v1.29.9"), "rollback"),
            ("v1.30.2", "v1.29.9", Some("v1.29.8"), "down"),
            ("v1.30.2+k3s2", "v1.30.2+k3s1", None, "down"),
        ];
        for (current, target, previous, expected) in cases {
            let previous = previous.map(v);
            let verdict = check_incremental(&v(current), &v(target), previous.as_ref());
            let got = match verdict {
                NoOp => "noop",
                Allowed(StepKind::Patch) => "patch",
                Allowed(StepKind::Minor) => "minor",
                Allowed(StepKind::Rollback) => "rollback",
                Refused(IncrementalRefusal::SkipsMinor { .. }) => "skips",
                Refused(IncrementalRefusal::MajorChange { .. }) => "major",
                Refused(IncrementalRefusal::Downgrade { .. }) => "down",
            };
            assert_eq!(got, *expected, "{current} -> {target} (previous {previous:?})");
        }
    }

    #[test]
    fn skew_table() {
        let allowed = |k: &str, cp: &str| check_skew(&v(k), &v(cp)) == SkewVerdict::Allowed;
        assert!(allowed("v1.30.2", "v1.30.0"), "same minor, newer patch is fine");
        assert!(allowed("v1.27.0", "v1.30.0"), "three minors behind is fine");
        assert!(!allowed("v1.26.9", "v1.30.0"), "four minors behind is refused");
        assert!(!allowed("v1.31.0", "v1.30.9"), "newer minor is refused");
        assert!(!allowed("v2.0.0", "v1.30.0"), "newer major is refused");
        assert!(!allowed("v1.30.0", "v2.0.0"), "older major is refused");
        assert!(matches!(
            check_skew(&v("v1.31.0"), &v("v1.30.0")),
            SkewVerdict::Refused(SkewRefusal::NewerThanControlPlane { .. })
        ));
        assert!(matches!(
            check_skew(&v("v1.20.0"), &v("v1.30.0")),
            SkewVerdict::Refused(SkewRefusal::TooFarBehind { .. })
        ));
    }

    #[test]
    fn refusals_explain_themselves() {
        let IncrementalVerdict::Refused(refusal) = check_incremental(&v("v1.30.2"), &v("v1.32.0"), None) else {
            panic!("skipping a minor must be refused");
        };
        assert_eq!(refusal.to_string(), "v1.32.0 skips minors after v1.30.2; upgrade one minor at a time");
    }

    fn any_version() -> impl Strategy<Value = Version> {
        (1u64..3, 0u64..12, 0u64..6, proptest::option::of(0u8..3)).prop_map(|(major, minor, patch, suffix)| {
            let version = Version::new(major, minor, patch);
            match suffix {
                Some(n) => version.with_suffix(&format!("+k3s{n}")).expect("valid suffix"),
                None => version,
            }
        })
    }

    proptest! {
        #[test]
        fn allowed_steps_change_at_most_one_minor(current in any_version(), target in any_version()) {
            if let IncrementalVerdict::Allowed(kind) = check_incremental(&current, &target, None) {
                prop_assert_eq!(current.major(), target.major());
                prop_assert!(target > current);
                prop_assert!(target.minor() - current.minor() <= 1);
                prop_assert_ne!(kind, StepKind::Rollback);
            }
        }

        #[test]
        fn no_op_exactly_when_equal(current in any_version(), target in any_version(), previous in proptest::option::of(any_version())) {
            let verdict = check_incremental(&current, &target, previous.as_ref());
            prop_assert_eq!(verdict == IncrementalVerdict::NoOp, current == target);
        }

        #[test]
        fn downgrades_only_to_the_previous_completed(current in any_version(), target in any_version(), previous in proptest::option::of(any_version())) {
            if target < current {
                let verdict = check_incremental(&current, &target, previous.as_ref());
                let is_rollback = verdict == IncrementalVerdict::Allowed(StepKind::Rollback);
                prop_assert_eq!(is_rollback, previous.as_ref() == Some(&target));
                let rollback_or_downgrade = matches!(verdict, IncrementalVerdict::Allowed(StepKind::Rollback) | IncrementalVerdict::Refused(IncrementalRefusal::Downgrade { .. }));
                prop_assert!(rollback_or_downgrade, "unexpected verdict for a downgrade");
            }
        }

        #[test]
        fn skew_allows_exactly_the_window(kubelet in any_version(), control_plane in any_version()) {
            let in_window = kubelet.major() == control_plane.major()
                && kubelet.minor() <= control_plane.minor()
                && control_plane.minor() - kubelet.minor() <= MAX_KUBELET_MINOR_LAG;
            prop_assert_eq!(check_skew(&kubelet, &control_plane) == SkewVerdict::Allowed, in_window);
        }
    }
}
