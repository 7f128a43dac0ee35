//! The per-worker cache of verified tokens, and of tokens that failed verification.

use super::caller::Identity;
use super::digest::sha256;
use super::error::IdentityError;
use std::borrow::Cow;
use std::collections::HashMap;

/// How long a token that failed verification is remembered as failed: repeating a forged
/// RS256/ES256 token then costs a lookup, not a signature check.
pub const FAILED_FOR_S: u64 = 60;

/// Tokens up to this many bytes are kept as themselves; longer ones by their SHA-256 digest.
pub const MAX_INLINE_TOKEN: usize = 2048;
/// Bytes of keys one generation holds at most (with `capacity` entries, whichever comes first).
const GENERATION_BYTES: usize = 2 << 20;

/// A token as the cache knows it: the token itself, hashed by the map's keyed SipHash and
/// compared in full on a hit (far cheaper than a SHA-256 per request, and borrowed, so a hit
/// allocates nothing), or for a token longer than [`MAX_INLINE_TOKEN`], a marker byte no token
/// starts with and its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey<'a>(Cow<'a, [u8]>);

impl TokenKey<'_> {
    pub fn of(token: &str) -> TokenKey<'_> {
        if token.len() <= MAX_INLINE_TOKEN {
            return TokenKey(Cow::Borrowed(token.as_bytes()));
        }
        let mut key = Vec::with_capacity(33);
        key.push(0xff); // never the first byte of UTF-8 text
        key.extend_from_slice(&sha256(token.as_bytes()));
        TokenKey(Cow::Owned(key))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Two generations of at most `capacity` entries (and [`GENERATION_BYTES`] of keys) each,
/// every entry good until a time.
#[derive(Debug)]
struct Generations<V> {
    current: HashMap<Box<[u8]>, (V, u64)>,
    current_bytes: usize,
    previous: HashMap<Box<[u8]>, (V, u64)>,
    capacity: usize,
}

impl<V: Clone> Generations<V> {
    fn new(capacity: usize) -> Self {
        Generations { current: HashMap::new(), current_bytes: 0, previous: HashMap::new(), capacity }
    }

    fn get(&mut self, key: &[u8], now_s: u64) -> Option<V> {
        let hit = match self.current.get(key) {
            Some(entry) => Some(entry.clone()),
            None => {
                let promoted = self.previous.remove(key);
                if let Some((v, until)) = &promoted {
                    self.insert(key, v.clone(), *until);
                }
                promoted
            }
        };
        match hit {
            Some((v, valid_until)) if now_s <= valid_until => Some(v),
            Some(_) => {
                self.current.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: &[u8], v: V, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.current.len() >= self.capacity || self.current_bytes + key.len() > GENERATION_BYTES {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += key.len();
        self.current.insert(key.into(), (v, valid_until_s));
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// JWTs by [`TokenKey`], so RS256/ES256 verification is not paid on every request: verified ones
/// until the token expires (plus leeway), failed ones for [`FAILED_FOR_S`]. Known API keys too,
/// in a key space of their own, so a request with a key costs a lookup instead of a SHA-256
/// (unknown keys are not kept: only configured keys can fill it). Bounded: two generations of at
/// most `capacity` entries each, for each kind (and at most 2 MiB of keys per generation). Build
/// a new cache whenever the keys change.
#[derive(Debug)]
pub struct TokenCache {
    verified: Generations<Identity>,
    failed: Generations<IdentityError>,
    api_keys: Generations<Identity>,
}

impl Default for TokenCache {
    /// A cache that remembers nothing.
    fn default() -> Self {
        TokenCache::new(0)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            verified: Generations::new(capacity),
            failed: Generations::new(capacity),
            api_keys: Generations::new(capacity),
        }
    }

    /// The identity of an API key found before.
    pub fn api_key(&mut self, key: &TokenKey<'_>) -> Option<Identity> {
        self.api_keys.get(key.bytes(), 0)
    }

    /// Remembers a configured API key's identity (good until the cache is replaced with the keys).
    pub fn insert_api_key(&mut self, key: &TokenKey<'_>, id: Identity) {
        self.api_keys.insert(key.bytes(), id, u64::MAX);
    }

    /// API keys remembered.
    pub fn api_keys(&self) -> usize {
        self.api_keys.len()
    }

    pub fn get(&mut self, key: &TokenKey<'_>, now_s: u64) -> Option<Identity> {
        self.verified.get(key.bytes(), now_s)
    }

    pub fn insert(&mut self, key: &TokenKey<'_>, id: Identity, valid_until_s: u64) {
        self.verified.insert(key.bytes(), id, valid_until_s);
    }

    /// Why this token failed, if it did within [`FAILED_FOR_S`].
    pub fn failure(&mut self, key: &TokenKey<'_>, now_s: u64) -> Option<IdentityError> {
        self.failed.get(key.bytes(), now_s)
    }

    /// Remembers a failure that waiting cannot cure (`NotYetValid` can, so it is not kept).
    pub fn insert_failure(&mut self, key: &TokenKey<'_>, error: IdentityError, now_s: u64) {
        if error != IdentityError::NotYetValid {
            self.failed.insert(key.bytes(), error, now_s.saturating_add(FAILED_FOR_S));
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
