//! Access tokens already verified, so that a client presenting the same token again costs a map
//! lookup instead of a signature check: the Ed25519 verification was a fifth of auth's CPU per
//! `GET /users/{id}` (docs/BENCHMARKS.md).
//!
//! Keyed by the whole token string: only the exact bytes whose signature was checked hit, so a
//! token changed by one character is verified (and refused) as before. An entry serves until the
//! token itself stops being valid, and the map is bounded, so tokens nobody presents again cost
//! memory for their lifetime at most, and a flood of distinct tokens evicts instead of growing.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shards of the map, so that concurrent requests seldom wait on one lock.
const SHARDS: usize = 16;

/// What verification found for tokens, by token, each until its validity ends.
pub struct VerifiedTokens<V> {
    shards: Vec<RwLock<HashMap<Box<str>, Entry<V>>>>,
    per_shard: usize,
    hasher: RandomState,
}

struct Entry<V> {
    value: V,
    /// Unix seconds after which the token is no longer accepted (its `exp` plus the leeway).
    valid_until: i64,
}

impl<V: Clone> VerifiedTokens<V> {
    /// A cache of at most about `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// What was verified for exactly `token`, if it is still valid.
    pub fn get(&self, token: &str) -> Option<V> {
        self.get_at(token, unix_now())
    }

    /// Remembers `value` for `token` until `valid_until` (Unix seconds).
    pub fn insert(&self, token: &str, value: V, valid_until: i64) {
        self.insert_at(token, value, valid_until, unix_now());
    }

    /// Forgets every token (e.g. when the keys that verified them are no longer trusted).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, token: &str) -> &RwLock<HashMap<Box<str>, Entry<V>>> {
        let index = self.hasher.hash_one(token) as usize % SHARDS;
        &self.shards[index]
    }

    fn get_at(&self, token: &str, now: i64) -> Option<V> {
        let shard = self.shard(token).read().unwrap_or_else(|e| e.into_inner());
        shard
            .get(token)
            .filter(|entry| now <= entry.valid_until)
            .map(|entry| entry.value.clone())
    }

    fn insert_at(&self, token: &str, value: V, valid_until: i64, now: i64) {
        if now > valid_until {
            return;
        }
        let mut shard = self.shard(token).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(token) {
            shard.retain(|_, entry| now <= entry.valid_until);
            if shard.len() >= self.per_shard {
                // Still full of live tokens: drop half, in no particular order. A dropped token
                // is verified again the next time it comes, which is all a miss costs.
                let mut keep = false;
                shard.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        shard.insert(token.into(), Entry { value, valid_until });
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_hits() {
        let cache = VerifiedTokens::new(100);
        cache.insert_at("header.claims.signature", 7, 1_000, 500);
        assert_eq!(cache.get_at("header.claims.signature", 500), Some(7));
        assert_eq!(cache.get_at("header.claims.signaturf", 500), None);
        assert_eq!(cache.get_at("header.claims.signatur", 500), None);
        assert_eq!(cache.get_at("header.claims.signature ", 500), None);
    }

    #[test]
    fn an_entry_ends_with_the_token() {
        let cache = VerifiedTokens::new(100);
        cache.insert_at("t", 1, 1_000, 500);
        assert_eq!(cache.get_at("t", 1_000), Some(1));
        assert_eq!(cache.get_at("t", 1_001), None);
        // An already expired token is not kept at all.
        cache.insert_at("old", 2, 400, 500);
        assert!(cache.get_at("old", 300).is_none());
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_serving() {
        let cache = VerifiedTokens::new(64);
        for n in 0..10_000 {
            cache.insert_at(&format!("token-{n}"), n, 1_000, 500);
            assert_eq!(cache.get_at(&format!("token-{n}"), 500), Some(n));
        }
        assert!(cache.len() <= 64 + SHARDS, "{} tokens held", cache.len());
    }

    #[test]
    fn expired_tokens_are_evicted_before_live_ones() {
        let cache = VerifiedTokens::new(SHARDS * 4);
        let same_shard = |token: &str| std::ptr::eq(cache.shard(token), cache.shard("live"));
        let mut mates = (0..).map(|n| format!("t-{n}")).filter(|t| same_shard(t));
        cache.insert_at("live", 1, 10_000, 500);
        for token in mates.by_ref().take(3) {
            cache.insert_at(&token, 2, 501, 500);
        }
        // The shard is full; later, its three short-lived tokens are over and make the room.
        let newcomer = mates.next().unwrap();
        cache.insert_at(&newcomer, 3, 10_000, 600);
        assert_eq!(cache.get_at("live", 600), Some(1));
        assert_eq!(cache.get_at(&newcomer, 600), Some(3));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn clear_forgets_everything() {
        let cache = VerifiedTokens::new(10);
        cache.insert_at("a", 1, 1_000, 500);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.get_at("a", 500), None);
    }
}
