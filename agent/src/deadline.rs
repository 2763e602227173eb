//! Deadlines from durations that may be large, with checked arithmetic on
//! time: a duration past what the clock can represent gives a deadline far in
//! the future instead of a panic.

use std::time::Duration;

use tokio::time::Instant;

/// About a century: later than any deadline the agent can mean.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now` plus `within`, or far in the future when that does not fit.
pub fn after(now: Instant, within: Duration) -> Instant {
    now.checked_add(within).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_do_not_overflow() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
        assert!(after(now, Duration::from_secs(u64::MAX)) > now);
    }
}
