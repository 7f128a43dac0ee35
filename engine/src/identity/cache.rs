//! The per-worker cache of verified tokens.

use super::caller::Identity;
use std::collections::HashMap;

/// Verified JWTs by digest, so RS256/ES256 verification is not paid on every request.
/// Bounded: two generations of at most `capacity` entries; an entry is used only until the
/// token expires (plus leeway). Build a new cache whenever the keys change.
#[derive(Debug, Default)]
pub struct TokenCache {
    current: HashMap<[u8; 32], (Identity, u64)>,
    previous: HashMap<[u8; 32], (Identity, u64)>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { current: HashMap::new(), previous: HashMap::new(), capacity }
    }

    pub fn get(&mut self, digest: &[u8; 32], now_s: u64) -> Option<Identity> {
        let hit = match self.current.get(digest) {
            Some(entry) => Some(entry.clone()),
            None => {
                let promoted = self.previous.remove(digest);
                if let Some((id, until)) = &promoted {
                    self.insert(*digest, id.clone(), *until);
                }
                promoted
            }
        };
        match hit {
            Some((id, valid_until)) if now_s <= valid_until => Some(id),
            Some(_) => {
                self.current.remove(digest);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, digest: [u8; 32], id: Identity, valid_until_s: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(digest, (id, valid_until_s));
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
