//! All of a policy's identity sources together, tried in the documented order.

use super::cache::{TokenCache, TokenKey};
use super::caller::{bearer, checked_tenant, Credentials, Identity, Source};
use super::config::{IdentityConfig, JwtAuthnConfig};
use super::digest::{parse_digest, sha256};
use super::error::IdentityError;
use super::jwt::JwtVerifier;
use crate::strict::{field_error, PolicyError};
use std::collections::HashMap;

/// All of a policy's identity sources. Build once per policy.
#[derive(Debug)]
pub struct Verifier {
    jwt: Option<JwtVerifier>,
    /// Digest -> (tenant, tier).
    api_keys: HashMap<[u8; 32], (String, Option<String>)>,
    jwt_authn: Option<JwtAuthnConfig>,
}

impl Verifier {
    pub fn new(cfg: &IdentityConfig) -> Result<Verifier, PolicyError> {
        let jwt = cfg.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        let mut api_keys = HashMap::with_capacity(cfg.api_keys.len());
        for (i, k) in cfg.api_keys.iter().enumerate() {
            let at = format!("identity.api_keys[{i}].sha256");
            let digest = parse_digest(&k.sha256.to_ascii_lowercase())
                .ok_or_else(|| field_error(&at, "must be 64 hex digits (the SHA-256 of the key)"))?;
            if api_keys.insert(digest, (k.tenant.clone(), k.tier.clone())).is_some() {
                return Err(field_error(at, "the same key is listed twice"));
            }
        }
        Ok(Verifier { jwt, api_keys, jwt_authn: cfg.jwt_authn.clone() })
    }

    /// Whether API keys are configured, so the filter reads `x-api-key` only then.
    pub fn accepts_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The `jwt_authn` source, so the filter knows which metadata to read.
    pub fn jwt_authn(&self) -> Option<&JwtAuthnConfig> {
        self.jwt_authn.as_ref()
    }

    /// A configured API key's identity: from `cache` when seen before, else by its SHA-256.
    fn api_key(&self, key: &str, cache: &mut TokenCache) -> Result<Identity, IdentityError> {
        let key = key.trim();
        let cached = TokenKey::of(key);
        if let Some(id) = cache.api_key(&cached) {
            return Ok(id);
        }
        let (tenant, tier) = self.api_keys.get(&sha256(key.as_bytes())).ok_or(IdentityError::UnknownApiKey)?;
        let id = Identity { tenant: tenant.clone(), tier: tier.clone(), expires_at_s: None, source: Source::ApiKey };
        cache.insert_api_key(&cached, id.clone());
        Ok(id)
    }

    /// Identifies a request, consulting `cache` for JWTs verified before.
    pub fn identify(&self, c: &Credentials, cache: &mut TokenCache, now_s: u64) -> Result<Identity, IdentityError> {
        if let (Some(_), Some(env)) = (&self.jwt_authn, &c.envoy_jwt) {
            let tenant = checked_tenant(env.tenant.as_deref().ok_or(IdentityError::MissingTenant)?)?;
            return Ok(Identity { tenant, tier: env.tier.clone(), expires_at_s: None, source: Source::EnvoyJwtAuthn });
        }
        // A bearer JWT wins over an API key header: clients that must send a provider-style
        // `x-api-key` (the Anthropic SDK, litellm) still identify by their token.
        if let (Some(jwt), Ok(token)) = (&self.jwt, bearer(c.authorization)) {
            if looks_like_jwt(token) {
                return self.verified_jwt(jwt, token, cache, now_s);
            }
        }
        if let Some(key) = c.api_key.filter(|_| !self.api_keys.is_empty()) {
            return self.api_key(key, cache);
        }
        let token = bearer(c.authorization)?;
        match &self.jwt {
            Some(jwt) if self.api_keys.is_empty() => self.verified_jwt(jwt, token, cache, now_s),
            _ if !self.api_keys.is_empty() => self.api_key(token, cache),
            _ => Err(IdentityError::MissingCredentials),
        }
    }

    /// A JWT, from the cache or verified (and cached, failures too).
    fn verified_jwt(
        &self,
        jwt: &JwtVerifier,
        token: &str,
        cache: &mut TokenCache,
        now_s: u64,
    ) -> Result<Identity, IdentityError> {
        let key = TokenKey::of(token);
        if let Some(id) = cache.get(&key, now_s) {
            return Ok(id);
        }
        if let Some(error) = cache.failure(&key, now_s) {
            return Err(error);
        }
        let id = jwt.verify_token(token, now_s).inspect_err(|e| cache.insert_failure(&key, *e, now_s))?;
        let valid_until = id.expires_at_s.unwrap_or(now_s).saturating_add(jwt.leeway_s());
        cache.insert(&key, id.clone(), valid_until);
        Ok(id)
    }
}

/// A compact JWS has three base64url parts; an API key does not.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}
