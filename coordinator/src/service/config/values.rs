//! The value syntaxes of the policy: durations (`"250ms"`, `"10s"`, `"5m"`,
//! `"1h"`) and limits written as text (`"10%"`, `"3"`) or as a plain count,
//! in the config file and in a request's policy overrides alike.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

use crate::plan::Limit;

/// The largest count a limit may hold.
pub const MAX_LIMIT_COUNT: usize = 1_000_000;

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let refuse = || format!("{text:?} is not a duration such as \"250ms\", \"10s\", \"5m\" or \"1h\"");
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| refuse())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(refuse()),
    };
    number.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(refuse)
}

/// Writes a duration the way [`parse_duration`] reads it, in the largest exact unit.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0 => "0s".to_owned(),
        _ if millis.is_multiple_of(3_600_000) => format!("{}h", millis / 3_600_000),
        _ if millis.is_multiple_of(60_000) => format!("{}m", millis / 60_000),
        _ if millis.is_multiple_of(1_000) => format!("{}s", millis / 1_000),
        _ => format!("{millis}ms"),
    }
}

/// Parses a limit from text and bounds its count.
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    match text.parse::<Limit>()? {
        Limit::Count(count) if count > MAX_LIMIT_COUNT => Err(format!("{count} is more than {MAX_LIMIT_COUNT}")),
        limit => Ok(limit),
    }
}

/// A limit as written: `"10%"`, `"3"` or `3`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a count from 0 or a percentage such as \"10%\"")]
pub enum LimitInput {
    /// A count or a percentage as text.
    Text(String),
    /// A plain count.
    Count(u64),
}

impl LimitInput {
    /// The limit it names.
    pub fn parse(&self) -> Result<Limit, String> {
        match self {
            LimitInput::Text(text) => parse_limit(text),
            LimitInput::Count(count) => parse_limit(&count.to_string()),
        }
    }
}

/// Serializes a limit as it is written in the config (`"10%"`, `"3"`).
pub fn limit_text<S: Serializer>(limit: &Limit, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(limit)
}

/// Serializes a duration as it is written in the config (`"60s"`).
pub fn duration_text<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

/// Deserializes an optional limit written as text or a count.
pub fn optional_limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Limit>, D::Error> {
    Option::<LimitInput>::deserialize(deserializer)?
        .map(|input| input.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// Deserializes an optional duration written as text.
pub fn optional_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_duration(&text).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1.5s", "-1s", "10 s", "10sec", "1d", "99999999999999999999h", "5124095576030432h"] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
        for text in ["250ms", "10s", "5m", "1h", "0s", "90s"] {
            let duration = parse_duration(text).expect("valid");
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn limits_are_text_or_counts_and_bounded() {
        assert_eq!(LimitInput::Text("10%".to_owned()).parse(), Ok(Limit::Percent(10)));
        assert_eq!(LimitInput::Count(3).parse(), Ok(Limit::Count(3)));
        assert!(LimitInput::Count(MAX_LIMIT_COUNT as u64 + 1).parse().is_err());
        assert!(LimitInput::Text("ten".to_owned()).parse().is_err());
        let refused = serde_json::from_str::<LimitInput>("-1").expect_err("not a count");
        assert!(refused.to_string().starts_with("a count from 0 or a percentage"), "{refused}");
    }
}
