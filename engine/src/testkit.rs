//! Helpers for the engine's own tests: a minimal valid policy to build on.

pub(crate) const DEMO_SECRET: &str = "fusebox-demo-secret-change-me";

/// A policy with one HS256 key and `extra` appended to the document (`, "tiers": {...}`).
pub(crate) fn policy_json(extra: &str) -> String {
    format!(
        r#"{{"identity": {{"jwt": {{"issuer": "https://auth.example", "audiences": ["fusebox"],
             "keys": [{{"alg": "HS256", "kid": "demo", "secret": "{DEMO_SECRET}"}}]}}}}{extra}}}"#
    )
}
