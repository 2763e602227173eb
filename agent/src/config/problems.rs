//! The problems collector: every problem with the configuration, named by the
//! key it concerns, gathered while raw values are turned into validated ones.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key's dotted path, such as `components[0].binary`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read but has problems, listed one per line.
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// Collects problems while turning raw values into validated ones.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records a problem with `key`.
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem { key: key.into(), message: message.into() });
    }

    /// The problems found, in the order they were found.
    pub(super) fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }

    /// Whether no problem was found.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(key, "is required");
        }
        value
    }

    pub(super) fn absolute_path(&mut self, key: &str, value: Option<PathBuf>) -> Option<PathBuf> {
        let path = self.required(key, value)?;
        if path.is_absolute() {
            Some(path)
        } else {
            self.add(key, format!("must be an absolute path, got {:?}", path.display().to_string()));
            None
        }
    }

    /// A number within `range`, when given and in it; out of range, a problem
    /// saying the range (numbers followed by `unit`) and `None`.
    pub(super) fn bounded(&mut self, key: &str, value: Option<u64>, range: (u64, u64), unit: &str) -> Option<u64> {
        let value = value?;
        if (range.0..=range.1).contains(&value) {
            return Some(value);
        }
        self.add(key, format!("must be between {} and {}{unit}, got {value}", range.0, range.1));
        None
    }

    pub(super) fn seconds(&mut self, key: &str, value: Option<u64>, default: Duration, range: (u64, u64)) -> Duration {
        self.bounded(key, value, range, " seconds").map_or(default, Duration::from_secs)
    }

    pub(super) fn count(&mut self, key: &str, value: Option<u64>, default: usize, range: (u64, u64)) -> usize {
        self.bounded(key, value, range, "").and_then(|n| usize::try_from(n).ok()).unwrap_or(default)
    }

    /// An optional URL that must start with one of `schemes`; `None` (with a
    /// problem recorded) when it does not, saying `rule`.
    pub(super) fn optional_url(
        &mut self,
        key: &str,
        value: Option<String>,
        schemes: &[&str],
        rule: &str,
    ) -> Option<Option<String>> {
        match value {
            Some(url) if !schemes.iter().any(|scheme| url.starts_with(scheme)) => {
                self.add(key, format!("{url:?} {rule}"));
                None
            }
            other => Some(other),
        }
    }

    pub(super) fn command(&mut self, key: &str, command: Vec<String>) -> Option<Vec<String>> {
        match command.first() {
            None => {
                self.add(key, "must name a program");
                None
            }
            Some(program) if !Path::new(program).is_absolute() => {
                self.add(key, format!("program {program:?} must be an absolute path"));
                None
            }
            Some(_) => Some(command),
        }
    }
}
