//! Timestamps written as RFC 3339 text in one piece. chrono's own `Serialize`
//! writes the same text, but as a dozen fragments that serde_json escapes one
//! at a time: that was a third of the time an agent spent saving an operation
//! record, which it does at every step; and chrono's `to_rfc3339` goes through
//! the formatting machinery, so the digits are written here. Reading is
//! chrono's own.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// The longest text [`rfc3339`] writes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const LONGEST: usize = 30;

/// Writes `at` as chrono's `Serialize` does: seconds with as many fraction
/// digits as needed (none, 3, 6 or 9) and `Z`.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; LONGEST];
    match rfc3339(at, &mut text) {
        Some(length) => serializer.serialize_str(std::str::from_utf8(&text[..length]).unwrap_or_default()),
        None => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// Writes `at` into `text` digit by digit and returns its length, or `None`
/// for a year outside 0000-9999 (chrono writes those with a sign).
fn rfc3339(at: &DateTime<Utc>, text: &mut [u8; LONGEST]) -> Option<usize> {
    let year = u32::try_from(at.year()).ok().filter(|&year| year <= 9999)?;
    let (mut second, mut nanos) = (at.second(), at.nanosecond());
    if nanos >= 1_000_000_000 {
        // A leap second: chrono holds it as second 59 with a nanosecond past one billion.
        second += 1;
        nanos -= 1_000_000_000;
    }
    digits(&mut text[0..4], year);
    text[4] = b'-';
    digits(&mut text[5..7], at.month());
    text[7] = b'-';
    digits(&mut text[8..10], at.day());
    text[10] = b'T';
    digits(&mut text[11..13], at.hour());
    text[13] = b':';
    digits(&mut text[14..16], at.minute());
    text[16] = b':';
    digits(&mut text[17..19], second);
    let fraction = match nanos {
        0 => 0,
        _ if nanos % 1_000_000 == 0 => 3,
        _ if nanos % 1_000 == 0 => 6,
        _ => 9,
    };
    let mut length = 19;
    if fraction > 0 {
        text[19] = b'.';
        digits(&mut text[20..20 + fraction], nanos / 10u32.pow(9 - fraction as u32));
        length = 20 + fraction;
    }
    text[length] = b'Z';
    Some(length + 1)
}

/// Writes `value` as decimal digits filling `into`, zero-padded on the left.
fn digits(into: &mut [u8], mut value: u32) {
    for digit in into.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
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
            seconds in prop_oneof![4 => -62_135_596_800i64..253_402_300_799, 1 => -100_000_000_000i64..400_000_000_000],
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
