//! Helpers for the engine's own tests: a minimal valid policy to build on, and a seeded
//! random source.

pub(crate) const DEMO_SECRET: &str = "fusebox-demo-secret-change-me";

/// A policy with one HS256 key and `extra` appended to the document (`, "tiers": {...}`).
pub(crate) fn policy_json(extra: &str) -> String {
    format!(
        r#"{{"identity": {{"jwt": {{"issuer": "https://auth.example", "audiences": ["fusebox"],
             "keys": [{{"alg": "HS256", "kid": "demo", "secret": "{DEMO_SECRET}"}}]}}}}{extra}}}"#
    )
}

/// A seeded xorshift64 for the tests that try many random inputs: the same inputs every run.
pub(crate) struct Xorshift(u64);

impl Xorshift {
    pub(crate) fn new(seed: u64) -> Xorshift {
        Xorshift(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next value, below `m`.
    pub(crate) fn below(&mut self, m: u64) -> u64 {
        self.next() % m
    }
}
