//! All of a policy's identity sources together, tried in the documented order.

use super::cache::{TokenCache, TokenKey};
use super::caller::{bearer, checked_scopes, checked_tenant, Credentials, Identity, Source};
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
    /// Digest -> the key's identity (without an expiry).
    api_keys: HashMap<[u8; 32], Identity>,
    jwt_authn: Option<JwtAuthnConfig>,
    /// (scope, claim) for each of the policy's scopes.
    scope_claims: Vec<(String, String)>,
}

impl Verifier {
    pub fn new(cfg: &IdentityConfig) -> Result<Verifier, PolicyError> {
        Verifier::with_scopes(cfg, Vec::new())
    }

    /// A verifier that also reads the caller's scopes: JWT (and `jwt_authn`) claims named by
    /// `(scope, claim)` pairs, and each API key's own `scopes`.
    pub fn with_scopes(cfg: &IdentityConfig, scope_claims: Vec<(String, String)>) -> Result<Verifier, PolicyError> {
        let mut jwt = cfg.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        if let Some(j) = &mut jwt {
            j.set_scope_claims(scope_claims.clone());
        }
        let mut api_keys = HashMap::with_capacity(cfg.api_keys.len());
        for (i, k) in cfg.api_keys.iter().enumerate() {
            let at = format!("identity.api_keys[{i}].sha256");
            let digest = parse_digest(&k.sha256.to_ascii_lowercase())
                .ok_or_else(|| field_error(&at, "must be 64 hex digits (the SHA-256 of the key)"))?;
            let scopes = checked_scopes(k.scopes.iter().map(|(s, v)| (s.as_str(), v.as_str()))).map_err(|_| {
                field_error(format!("identity.api_keys[{i}].scopes"), "scope values are 1-128 of [A-Za-z0-9-_.:@]")
            })?;
            let id = Identity {
                tenant: k.tenant.clone(),
                tier: k.tier.clone(),
                expires_at_s: None,
                source: Source::ApiKey,
                scopes,
            };
            if api_keys.insert(digest, id).is_some() {
                return Err(field_error(at, "the same key is listed twice"));
            }
        }
        Ok(Verifier { jwt, api_keys, jwt_authn: cfg.jwt_authn.clone(), scope_claims })
    }

    /// Whether API keys are configured, so the filter reads `x-api-key` only then.
    pub fn accepts_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The `(scope, claim)` pairs a `jwt_authn` payload is read for.
    pub fn scope_claims(&self) -> &[(String, String)] {
        &self.scope_claims
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
        let id = self.api_keys.get(&sha256(key.as_bytes())).ok_or(IdentityError::UnknownApiKey)?.clone();
        cache.insert_api_key(&cached, id.clone());
        Ok(id)
    }

    /// Identifies a request, consulting `cache` for JWTs verified before.
    pub fn identify(&self, c: &Credentials, cache: &mut TokenCache, now_s: u64) -> Result<Identity, IdentityError> {
        if let (Some(_), Some(env)) = (&self.jwt_authn, &c.envoy_jwt) {
            let tenant = checked_tenant(env.tenant.as_deref().ok_or(IdentityError::MissingTenant)?)?;
            let scopes = checked_scopes(env.scopes.iter().map(|(s, v)| (s.as_str(), v.as_str())))?;
            return Ok(Identity {
                tenant,
                tier: env.tier.clone(),
                expires_at_s: None,
                source: Source::EnvoyJwtAuthn,
                scopes,
            });
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
