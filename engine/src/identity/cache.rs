//! The per-worker cache of verified tokens, and of tokens that failed verification.

use super::caller::Identity;
use super::error::IdentityError;
use std::collections::HashMap;

/// How long a token that failed verification is remembered as failed: repeating a forged
/// RS256/ES256 token then costs a digest and a lookup, not a signature check.
pub const FAILED_FOR_S: u64 = 60;

/// Two generations of at most `capacity` entries each, every entry good until a time.
#[derive(Debug)]
struct Generations<V> {
    current: HashMap<[u8; 32], (V, u64)>,
    previous: HashMap<[u8; 32], (V, u64)>,
    capacity: usize,
}

impl<V: Clone> Generations<V> {
    fn new(capacity: usize) -> Self {
        Generations { current: HashMap::new(), previous: HashMap::new(), capacity }
    }

    fn get(&mut self, digest: &[u8; 32], now_s: u64) -> Option<V> {
        let hit = match self.current.get(digest) {
            Some(entry) => Some(entry.clone()),
            None => {
                let promoted = self.previous.remove(digest);
                if let Some((v, until)) = &promoted {
                    self.insert(*digest, v.clone(), *until);
                }
                promoted
            }
        };
        match hit {
            Some((v, valid_until)) if now_s <= valid_until => Some(v),
            Some(_) => {
                self.current.remove(digest);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, digest: [u8; 32], v: V, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(digest, (v, valid_until_s));
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// JWTs by digest, so RS256/ES256 verification is not paid on every request: verified ones
/// until the token expires (plus leeway), failed ones for [`FAILED_FOR_S`]. Bounded: two
/// generations of at most `capacity` entries each, for each kind. Build a new cache whenever
/// the keys change.
#[derive(Debug)]
pub struct TokenCache {
    verified: Generations<Identity>,
    failed: Generations<IdentityError>,
}

impl Default for TokenCache {
    /// A cache that remembers nothing.
    fn default() -> Self {
        TokenCache::new(0)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { verified: Generations::new(capacity), failed: Generations::new(capacity) }
    }

    pub fn get(&mut self, digest: &[u8; 32], now_s: u64) -> Option<Identity> {
        self.verified.get(digest, now_s)
    }

    pub fn insert(&mut self, digest: [u8; 32], id: Identity, valid_until_s: u64) {
        self.verified.insert(digest, id, valid_until_s);
    }

    /// Why this token failed, if it did within [`FAILED_FOR_S`].
    pub fn failure(&mut self, digest: &[u8; 32], now_s: u64) -> Option<IdentityError> {
        self.failed.get(digest, now_s)
    }

    /// Remembers a failure that waiting cannot cure (`NotYetValid` can, so it is not kept).
    pub fn insert_failure(&mut self, digest: [u8; 32], error: IdentityError, now_s: u64) {
        if error != IdentityError::NotYetValid {
            self.failed.insert(digest, error, now_s.saturating_add(FAILED_FOR_S));
        }
    }

    /// Verified tokens remembered.
    pub fn len(&self) -> usize {
        self.verified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Failed tokens remembered.
    pub fn failures(&self) -> usize {
        self.failed.len()
    }
}
