//! Commands that need no running service: checking a policy file, minting a demo token,
//! hashing an API key.

use fusebox_engine::identity::{hex, mint, sha256, JwtKey, MintKey};
use fusebox_engine::policy::Policy;
use std::path::PathBuf;

pub(crate) fn load(path: &PathBuf) -> Result<Policy, String> {
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Policy::from_json(&raw).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn token(policy: &Policy, tenant: &str, tier: Option<&str>, ttl: u64) -> Result<String, String> {
    let jwt = policy.identity.jwt.as_ref().ok_or("the policy has no 'identity.jwt' section")?;
    let (kid, secret) = jwt
        .keys
        .iter()
        .find_map(|k| match k {
            JwtKey::HS256 { kid, secret } => Some((kid.as_deref(), secret.as_str())),
            _ => None,
        })
        .ok_or("the policy has no HS256 key to sign demo tokens with")?;
    let audience = jwt.audiences.first().ok_or("the policy has no audience")?;
    let mut claims = serde_json::Map::new();
    claims.insert(jwt.tenant_claim.clone(), tenant.into());
    if let (Some(claim), Some(tier)) = (&jwt.tier_claim, tier) {
        claims.insert(claim.clone(), tier.into());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    mint(MintKey::Hs256(secret), kid, &jwt.issuer, audience, claims, now, ttl)
}

/// Reads an API key from stdin and prints its SHA-256 digest.
pub(crate) fn hash_key() -> Result<(), String> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key).map_err(|e| e.to_string())?;
    let key = key.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        return Err("no key on stdin".to_string());
    }
    println!("{}", hex(&sha256(key.as_bytes())));
    Ok(())
}
