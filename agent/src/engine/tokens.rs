//! The request-token index: which operation each request token names, and a
//! digest of the request it came with, kept durably for at least the newest
//! [`KEPT_TOKENS`] tokens and for [`KEPT_TOKEN_DAYS`] days, whichever holds
//! more. A token whose operation left the recent list still answers with that
//! operation as it ended (its record is archived with the token).
//!
//! The digest is a sha256 over the request's canonical text
//! ([`upkeep_common::api::canonical`]), prefixed with its scheme, so it stays
//! the same across agent versions. Digests saved before the scheme existed
//! (no prefix) cannot be recomputed; a retry with such a token is taken as the
//! same request.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use upkeep_common::api::Operation;
use upkeep_common::ids::{OperationId, RequestToken};

/// How many of the newest tokens are always kept.
pub const KEPT_TOKENS: usize = 10_000;
/// How many days every token is kept.
pub const KEPT_TOKEN_DAYS: i64 = 30;
/// The prefix of digests over the canonical text.
const SCHEME: &str = "c1:";

/// The digest of a request's canonical text.
pub fn request_digest(canonical_text: &str) -> String {
    format!("{SCHEME}{}", hex::encode(Sha256::digest(canonical_text.as_bytes())))
}

/// Whether a saved digest and a new one name the same request.
pub fn same_request(saved: &str, new: &str) -> bool {
    saved == new || !saved.starts_with(SCHEME)
}

/// What the index keeps for one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The token.
    pub token: RequestToken,
    /// The operation it started.
    pub operation_id: OperationId,
    /// The digest of the request it came with.
    pub digest: String,
    /// When the operation was created.
    pub created_at: DateTime<Utc>,
}

/// A token whose operation left the recent list, saved with that operation as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedToken {
    /// The index entry.
    pub entry: TokenEntry,
    /// The operation as it ended.
    pub operation: Operation,
}

/// The file-name-safe key of a token's archived record.
pub fn archive_key(token: &RequestToken) -> String {
    hex::encode(Sha256::digest(token.as_str().as_bytes()))
}

/// Every token the agent remembers, in memory (the archived operations stay on disk).
#[derive(Debug, Default)]
pub struct TokenIndex {
    entries: HashMap<RequestToken, TokenEntry>,
}

impl TokenIndex {
    /// Adds or replaces a token's entry.
    pub fn insert(&mut self, entry: TokenEntry) {
        self.entries.insert(entry.token.clone(), entry);
    }

    /// The entry for `token`.
    pub fn get(&self, token: &RequestToken) -> Option<&TokenEntry> {
        self.entries.get(token)
    }

    /// Forgets a token.
    pub fn remove(&mut self, token: &RequestToken) {
        self.entries.remove(token);
    }

    /// The tokens that may be forgotten at `now`: those outside the newest
    /// [`KEPT_TOKENS`] that are also older than [`KEPT_TOKEN_DAYS`] days.
    pub fn expired(&self, now: DateTime<Utc>) -> Vec<RequestToken> {
        if self.entries.len() <= KEPT_TOKENS {
            return Vec::new();
        }
        let cutoff = now.checked_sub_signed(Duration::days(KEPT_TOKEN_DAYS)).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut entries: Vec<&TokenEntry> = self.entries.values().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.created_at));
        entries.into_iter().skip(KEPT_TOKENS).filter(|e| e.created_at < cutoff).map(|e| e.token.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, created_at: DateTime<Utc>) -> TokenEntry {
        TokenEntry {
            token: format!("token-{index}").parse().expect("valid"),
            operation_id: format!("op-{index}").parse().expect("valid"),
            digest: request_digest("x"),
            created_at,
        }
    }

    #[test]
    fn the_newest_ten_thousand_and_the_last_thirty_days_are_both_kept() {
        let now = DateTime::<Utc>::from_timestamp(2_000_000_000, 0).expect("valid");
        let old = now - Duration::days(31);
        let recent = now - Duration::days(29);
        let mut index = TokenIndex::default();
        for i in 0..10_000 {
            index.insert(entry(i, old));
        }
        assert!(index.expired(now).is_empty(), "10,000 tokens are kept however old");
        for i in 10_000..10_010 {
            index.insert(entry(i, recent));
        }
        let mut expired = index.expired(now);
        expired.sort();
        assert_eq!(expired.len(), 10, "the oldest beyond 10,000 go");
        assert!(expired.iter().all(|t| index.get(t).is_some_and(|e| e.created_at == old)));
        let mut young = TokenIndex::default();
        for i in 0..10_050 {
            young.insert(entry(i, recent));
        }
        assert!(young.expired(now).is_empty(), "tokens younger than 30 days are kept however many");
    }

    #[test]
    fn digests_are_stable_and_legacy_digests_match_any_request() {
        // Pinned: computed with sha256sum, so a change of scheme cannot pass unnoticed.
        assert_eq!(
            request_digest("upkeep cordon request 1"),
            "c1:79d28465e68a6758b175e6b6c5876e7ff6f3e8e4470e279db03e2cd1b3f04433"
        );
        assert!(same_request(&request_digest("a"), &request_digest("a")));
        assert!(!same_request(&request_digest("a"), &request_digest("b")));
        assert!(same_request("0123abcd", &request_digest("b")), "a digest from before the scheme");
    }
}
