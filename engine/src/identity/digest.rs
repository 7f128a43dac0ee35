//! SHA-256 digests: how API keys are stored in a policy and how verified tokens are cached.

/// SHA-256 of a secret, as stored in the policy for API keys and used to key the token cache.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    hmac_sha256::Hash::hash(bytes)
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
