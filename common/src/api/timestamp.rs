//! Timestamps written as RFC 3339 text in one piece. chrono's own `Serialize`
//! writes the same text, but as a dozen fragments that serde_json escapes one
//! at a time: that was a third of the time an agent spent saving an operation
//! record, which it does at every step. Reading is chrono's own.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Writes `at` as chrono's `Serialize` does: seconds with as many fraction
/// digits as needed (none, 3, 6 or 9) and `Z`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Writes `at` as [`serialize`] does, or `null` when absent.
pub fn serialize_option<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serialize(at, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "serialize_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chronos {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    proptest! {
        #[test]
        fn the_text_is_chronos_own(
            seconds in -62_135_596_800i64..253_402_300_799,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|ms| ms * 1_000_000), (0u32..1_000_000).prop_map(|us| us * 1000), 0u32..1_000_000_000, 1_000_000_000u32..2_000_000_000],
            present in any::<bool>(),
        ) {
            let Some(at) = Utc.timestamp_opt(seconds, nanos).single() else { return Ok(()) };
            let maybe = present.then_some(at);
            let ours = serde_json::to_string(&Ours { at, maybe }).expect("serializes");
            let chronos = serde_json::to_string(&Chronos { at, maybe }).expect("serializes");
            prop_assert_eq!(ours, chronos);
        }
    }
}
