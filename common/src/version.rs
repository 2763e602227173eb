//! Kubernetes component versions: parse, display and order.
//!
//! Accepted forms: `1.30`, `1.30.2`, `v1.30.2`, and vendor suffixes such as
//! `v1.30.2+k3s1`, `v1.19.16-r80` or `v1.30.2-eks-1-30`. Unlike semver, a
//! suffix is not a pre-release: it orders *after* the plain version of the same
//! MAJOR.MINOR.PATCH, and two suffixes compare naturally (`-r9` < `-r80`).
//! A missing patch counts as `0` for ordering and equality (`1.30` == `1.30.0`)
//! but is kept for display.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest version string accepted, prefix and suffix included.
pub const MAX_VERSION_LEN: usize = 128;

/// A parsed Kubernetes version.
#[derive(Debug, Clone)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: Option<u64>,
    suffix: Option<String>,
    v_prefix: bool,
}

/// Why a string is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The input was empty (or only whitespace).
    #[error("version is empty")]
    Empty,
    /// The input is longer than [`MAX_VERSION_LEN`].
    #[error("version is longer than {MAX_VERSION_LEN} characters")]
    TooLong,
    /// The numeric part is not `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`.
    #[error("expected MAJOR.MINOR or MAJOR.MINOR.PATCH, optionally prefixed by 'v': {0:?}")]
    BadFormat(String),
    /// A numeric field has a leading zero or does not fit in 64 bits.
    #[error("version number {0:?} is not a plain decimal number")]
    BadNumber(String),
    /// The vendor suffix is empty or holds characters other than `[A-Za-z0-9.+_-]`.
    #[error("vendor suffix {0:?} must be '+' or '-' followed by letters, digits, '.', '_', '+' or '-'")]
    BadSuffix(String),
}

impl Version {
    /// A plain `vMAJOR.MINOR.PATCH` version.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self { major, minor, patch: Some(patch), suffix: None, v_prefix: true }
    }

    /// The same version with a vendor suffix (including its leading `+` or `-`).
    pub fn with_suffix(mut self, suffix: &str) -> Result<Self, VersionError> {
        validate_suffix(suffix)?;
        self.suffix = Some(suffix.to_owned());
        Ok(self)
    }

    /// The major number.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor number.
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch number (`0` when the version was written without one).
    pub fn patch(&self) -> u64 {
        self.patch.unwrap_or(0)
    }

    /// The vendor suffix with its leading `+` or `-`, if any.
    pub fn suffix(&self) -> Option<&str> {
        self.suffix.as_deref()
    }

    /// Whether `self` and `other` share MAJOR.MINOR.
    pub fn same_minor(&self, other: &Version) -> bool {
        self.major == other.major && self.minor == other.minor
    }

    /// MAJOR.MINOR.PATCH as a tuple, ignoring the suffix.
    pub fn core(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch())
    }

    /// Finds the first version in free text, such as `Kubernetes v1.30.2` printed
    /// by `kubelet --version`. Tokens are split on whitespace and commas.
    pub fn find_in_text(text: &str) -> Option<Version> {
        text.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|token| token.starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
            .find_map(|token| token.parse().ok())
    }
}

fn parse_number(text: &str) -> Result<u64, VersionError> {
    let well_formed =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if !well_formed {
        return Err(VersionError::BadNumber(text.to_owned()));
    }
    text.parse().map_err(|_| VersionError::BadNumber(text.to_owned()))
}

fn validate_suffix(suffix: &str) -> Result<(), VersionError> {
    let mut chars = suffix.chars();
    let lead_ok = matches!(chars.next(), Some('+' | '-'));
    let rest = chars.as_str();
    let rest_ok =
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if lead_ok && rest_ok { Ok(()) } else { Err(VersionError::BadSuffix(suffix.to_owned())) }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let (v_prefix, text) = match text.strip_prefix('v') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let core_end = text.find(['+', '-']).unwrap_or(text.len());
        let (core, suffix) = text.split_at(core_end);
        let parts: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(VersionError::BadFormat(input.to_owned()));
        }
        let major = parse_number(parts[0])?;
        let minor = parse_number(parts[1])?;
        let patch = parts.get(2).map(|p| parse_number(p)).transpose()?;
        let suffix = if suffix.is_empty() {
            None
        } else {
            validate_suffix(suffix)?;
            Some(suffix.to_owned())
        };
        Ok(Self { major, minor, patch, suffix, v_prefix })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v_prefix {
            f.write_str("v")?;
        }
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        if let Some(suffix) = &self.suffix {
            f.write_str(suffix)?;
        }
        Ok(())
    }
}

/// Compares two suffixes naturally: runs of digits as numbers, the rest as text.
fn compare_suffixes(a: &str, b: &str) -> Ordering {
    let mut left = a.as_bytes();
    let mut right = b.as_bytes();
    loop {
        match (left.first(), right.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(l), Some(r)) if l.is_ascii_digit() && r.is_ascii_digit() => {
                let l_len = left.iter().take_while(|c| c.is_ascii_digit()).count();
                let r_len = right.iter().take_while(|c| c.is_ascii_digit()).count();
                let l_digits = trim_leading_zeros(&left[..l_len]);
                let r_digits = trim_leading_zeros(&right[..r_len]);
                let by_value = l_digits.len().cmp(&r_digits.len()).then(l_digits.cmp(r_digits));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                left = &left[l_len..];
                right = &right[r_len..];
            }
            (Some(l), Some(r)) => {
                if l != r {
                    return l.cmp(r);
                }
                left = &left[1..];
                right = &right[1..];
            }
        }
    }
}

fn trim_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core().cmp(&other.core()).then_with(|| match (&self.suffix, &other.suffix) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => compare_suffixes(a, b).then_with(|| a.cmp(b)),
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.core().hash(state);
        self.suffix.hash(state);
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
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
    fn parses_every_accepted_form() {
        assert_eq!(v("1.30").core(), (1, 30, 0));
        assert_eq!(v("1.30.2").core(), (1, 30, 2));
        assert_eq!(v("v1.30.2").core(), (1, 30, 2));
        assert_eq!(v("v1.30.2+k3s1").suffix(), Some("+k3s1"));
        assert_eq!(v("v1.19.16-r80").suffix(), Some("-r80"));
        assert_eq!(v("v1.30.2-eks-1-30").suffix(), Some("-eks-1-30"));
        assert_eq!(v("  v1.30.2 ").core(), (1, 30, 2));
    }

    #[test]
    fn displays_back_what_it_parsed() {
        for text in ["1.30", "1.30.2", "v1.30.2", "v1.30.2+k3s1", "v1.19.16-r80", "v1.30.0-eks-1-30"] {
            assert_eq!(v(text).to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        assert_eq!("".parse::<Version>(), Err(VersionError::Empty));
        assert!(matches!("1".parse::<Version>(), Err(VersionError::BadFormat(_))));
        assert!(matches!("1.2.3.4".parse::<Version>(), Err(VersionError::BadFormat(_))));
        assert!(matches!("v".parse::<Version>(), Err(VersionError::BadFormat(_)) | Err(VersionError::BadNumber(_))));
        assert!(matches!("1.x".parse::<Version>(), Err(VersionError::BadNumber(_))));
        assert!(matches!("01.30".parse::<Version>(), Err(VersionError::BadNumber(_))));
        assert!(matches!("1.30.99999999999999999999".parse::<Version>(), Err(VersionError::BadNumber(_))));
        assert!(matches!("1.30.2-".parse::<Version>(), Err(VersionError::BadSuffix(_))));
        assert!(matches!("1.30.2+a b".parse::<Version>(), Err(VersionError::BadSuffix(_))));
        assert!(matches!("V1.30.2".parse::<Version>(), Err(VersionError::BadNumber(_))));
        assert_eq!("1.2.".repeat(40).parse::<Version>(), Err(VersionError::TooLong));
    }

    #[test]
    fn orders_suffixes_after_the_plain_version() {
        assert!(v("v1.30.2") < v("v1.30.2+k3s1"));
        assert!(v("v1.30.2+k3s1") < v("v1.30.2+k3s2"));
        assert!(v("v1.19.16-r9") < v("v1.19.16-r80"));
        assert!(v("v1.30.2+k3s9") < v("v1.30.3"));
        assert!(v("v1.9.0") < v("v1.10.0"));
    }

    #[test]
    fn missing_patch_equals_zero_patch() {
        assert_eq!(v("1.30"), v("v1.30.0"));
        assert!(v("1.30") < v("1.30.1"));
    }

    #[test]
    fn finds_the_version_in_kubelet_output() {
        assert_eq!(Version::find_in_text("Kubernetes v1.30.2\n"), Some(v("v1.30.2")));
        assert_eq!(Version::find_in_text("kube-proxy version: v1.29.0-eks-1-29"), Some(v("v1.29.0-eks-1-29")));
        assert_eq!(Version::find_in_text("no version here"), None);
    }

    #[test]
    fn serializes_as_a_string() {
        let json = serde_json::to_string(&v("v1.30.2+k3s1")).expect("serializes");
        assert_eq!(json, "\"v1.30.2+k3s1\"");
        let back: Version = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, v("v1.30.2+k3s1"));
        assert!(serde_json::from_str::<Version>("\"one.two\"").is_err());
    }

    fn any_version() -> impl Strategy<Value = Version> {
        (
            0u64..3,
            0u64..40,
            proptest::option::of(0u64..30),
            proptest::option::of("[+-][a-z]{1,3}[0-9]{0,3}"),
            any::<bool>(),
        )
            .prop_map(|(major, minor, patch, suffix, v_prefix)| Version {
                major,
                minor,
                patch,
                suffix,
                v_prefix,
            })
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(version in any_version()) {
            let back: Version = version.to_string().parse().expect("displayed version parses");
            prop_assert_eq!(back.to_string(), version.to_string());
            prop_assert_eq!(back, version);
        }

        #[test]
        fn ordering_is_total_and_consistent(a in any_version(), b in any_version()) {
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
            if a.core() != b.core() {
                prop_assert_eq!(a.cmp(&b), a.core().cmp(&b.core()));
            }
        }

        #[test]
        fn parser_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<Version>();
        }
    }
}
