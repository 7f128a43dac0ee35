//! The policy a worker enforces, ready to use.

use fusebox_engine::identity::{TokenCache, Verifier};
use fusebox_engine::policy::{Policy, PolicyError};
use std::cell::RefCell;

/// Verified tokens remembered per worker (two generations of this many).
const TOKEN_CACHE_ENTRIES: usize = 4096;
/// A policy ready to use: parsed, validated, keys built, with its own token cache (a new
/// policy may have rotated keys, so its cache starts empty).
pub struct ActivePolicy {
    pub policy: Policy,
    pub verifier: Verifier,
    pub token_cache: RefCell<TokenCache>,
}

impl ActivePolicy {
    pub fn new(policy: Policy) -> Result<ActivePolicy, PolicyError> {
        let verifier = policy.verifier()?;
        Ok(ActivePolicy { policy, verifier, token_cache: RefCell::new(TokenCache::new(TOKEN_CACHE_ENTRIES)) })
    }
}
