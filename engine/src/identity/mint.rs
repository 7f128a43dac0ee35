//! Minting tokens for the demo, tests and benchmarks (never used by the filter).

use jwt_simple::prelude::*;
use serde_json::{Map, Value};

/// The key a token is minted with.
#[derive(Debug, Clone, Copy)]
pub enum MintKey<'a> {
    /// An HS256 shared secret.
    Hs256(&'a str),
    /// An RS256 private key, PKCS#8 PEM.
    Rs256Pem(&'a str),
}

/// Mints a token. Used by the demo (`make token`), tests and `make bench`; never by the filter.
pub fn mint(
    key: MintKey<'_>,
    kid: Option<&str>,
    issuer: &str,
    audience: &str,
    claims: Map<String, Value>,
    issued_at_s: u64,
    valid_for_s: u64,
) -> Result<String, String> {
    let claims = mint_claims(issuer, audience, claims, issued_at_s, valid_for_s);
    match key {
        MintKey::Hs256(secret) => {
            let mut key = HS256Key::from_bytes(secret.as_bytes());
            if let Some(kid) = kid {
                key = key.with_key_id(kid);
            }
            key.authenticate(claims)
        }
        MintKey::Rs256Pem(pem) => {
            let mut key = RS256KeyPair::from_pem(pem).map_err(|e| e.to_string())?;
            if let Some(kid) = kid {
                key = key.with_key_id(kid);
            }
            key.sign(claims)
        }
    }
    .map_err(|e| e.to_string())
}

fn mint_claims(
    issuer: &str,
    audience: &str,
    claims: Map<String, Value>,
    issued_at_s: u64,
    valid_for_s: u64,
) -> JWTClaims<Map<String, Value>> {
    let mut c = Claims::with_custom_claims(claims, Duration::from_secs(valid_for_s))
        .with_issuer(issuer)
        .with_audience(audience);
    let iat = UnixTimeStamp::from_secs(issued_at_s);
    c.issued_at = Some(iat);
    c.invalid_before = Some(iat);
    c.expires_at = Some(iat + Duration::from_secs(valid_for_s));
    c
}
