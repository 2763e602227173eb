//! A rollout limit as an operator gives it: a count of nodes or a percentage
//! of the fleet, resolved against the fleet's size.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A limit given as a count or a percentage of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// A number of nodes.
    Count(usize),
    /// A percentage of the fleet, rounded down.
    Percent(u8),
}

impl Limit {
    /// The limit as a number of nodes for a fleet of `total`.
    pub fn resolve(self, total: usize) -> usize {
        match self {
            Limit::Count(count) => count,
            Limit::Percent(percent) => total * usize::from(percent) / 100,
        }
    }

    /// Like [`Limit::resolve`], but a non-zero percentage of a small fleet is
    /// at least one node (10% of 8 nodes lets one node go at a time).
    pub fn resolve_nonzero(self, total: usize) -> usize {
        match self {
            Limit::Percent(percent) if percent > 0 => self.resolve(total).max(1),
            _ => self.resolve(total),
        }
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(percent) => match percent.parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Limit::Percent(p)),
                _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
            },
            None => {
                text.parse::<usize>().map(Limit::Count).map_err(|_| format!("{text:?} is not a count or a percentage"))
            }
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(count) => write!(f, "{count}"),
            Limit::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_counts_and_percentages() {
        assert_eq!("3".parse::<Limit>(), Ok(Limit::Count(3)));
        assert_eq!("25%".parse::<Limit>(), Ok(Limit::Percent(25)));
        assert!("101%".parse::<Limit>().is_err());
        assert!("-1".parse::<Limit>().is_err());
        assert_eq!(Limit::Percent(25).resolve(10), 2);
        assert_eq!(Limit::Percent(10).resolve(5), 0);
        assert_eq!(Limit::Percent(10).resolve_nonzero(5), 1);
        assert_eq!(Limit::Count(0).resolve_nonzero(5), 0);
    }
}
