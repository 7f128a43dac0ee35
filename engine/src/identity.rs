//! Tenant identity from verified credentials, in this order:
//! 1. the payload Envoy's own `jwt_authn` filter verified (when configured and present);
//! 2. an API key (`x-api-key`, or a bearer value that is not a JWT), matched by SHA-256 digest;
//! 3. a bearer JWT verified against the policy's keys (HS256, RS256, ES256, or a JWK set), with
//!    `iss`, `aud`, `exp` (required) and `nbf` checked against a clock passed in by the caller.
//!
//! Nothing the client can simply assert is trusted.

use crate::policy::{field_error, is_valid_tenant_id, IdentityConfig, JwtAuthnConfig, JwtConfig, JwtKey, PolicyError};
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Jwt,
    ApiKey,
    EnvoyJwtAuthn,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: String,
    /// Tier from the verified tier claim or key entry, if any (the policy may override it).
    pub tier: Option<String>,
    /// `exp` of a JWT (unix seconds); `None` for API keys and Envoy-verified payloads.
    pub expires_at_s: Option<u64>,
    pub source: Source,
}

/// What a request presents; the filter reads these from headers and metadata.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub api_key: Option<&'a str>,
    /// Claims from Envoy's `jwt_authn` metadata, when that source is configured and present.
    pub envoy_jwt: Option<EnvoyJwt>,
}

/// Tenant and tier claims of a payload Envoy's `jwt_authn` already verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyJwt {
    pub tenant: Option<String>,
    pub tier: Option<String>,
}

/// Why a request has no usable identity. Each maps to a `401` with a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    MissingCredentials,
    UnsupportedScheme,
    TokenTooLarge,
    MalformedToken,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    MissingExpiry,
    WrongIssuer,
    WrongAudience,
    MissingTenant,
    InvalidTenant,
    UnknownApiKey,
}

impl IdentityError {
    /// Stable machine-readable code (the reply's `error.code`).
    pub fn code(self) -> &'static str {
        match self {
            IdentityError::MissingCredentials => "missing_credentials",
            IdentityError::UnsupportedScheme => "unsupported_auth_scheme",
            IdentityError::TokenTooLarge => "token_too_large",
            IdentityError::MalformedToken => "malformed_token",
            IdentityError::UnknownKey => "unknown_signing_key",
            IdentityError::BadSignature => "invalid_signature",
            IdentityError::Expired => "token_expired",
            IdentityError::NotYetValid => "token_not_yet_valid",
            IdentityError::MissingExpiry => "token_without_expiry",
            IdentityError::WrongIssuer => "invalid_issuer",
            IdentityError::WrongAudience => "invalid_audience",
            IdentityError::MissingTenant => "missing_tenant_claim",
            IdentityError::InvalidTenant => "invalid_tenant_claim",
            IdentityError::UnknownApiKey => "invalid_api_key",
        }
    }

    /// Human-readable explanation for the reply's `error.message`.
    pub fn message(self) -> &'static str {
        match self {
            IdentityError::MissingCredentials => "no credentials: send 'Authorization: Bearer <token>'",
            IdentityError::UnsupportedScheme => "unsupported authorization scheme: use 'Bearer <token>'",
            IdentityError::TokenTooLarge => "bearer token is larger than allowed",
            IdentityError::MalformedToken => "bearer token is not a well-formed JWT",
            IdentityError::UnknownKey => "bearer token is signed with an unknown key or algorithm",
            IdentityError::BadSignature => "bearer token signature does not verify",
            IdentityError::Expired => "bearer token has expired",
            IdentityError::NotYetValid => "bearer token is not valid yet (nbf)",
            IdentityError::MissingExpiry => "bearer token has no expiry (exp)",
            IdentityError::WrongIssuer => "bearer token issuer is not accepted",
            IdentityError::WrongAudience => "bearer token audience is not accepted",
            IdentityError::MissingTenant => "bearer token has no tenant claim",
            IdentityError::InvalidTenant => "tenant claim is not a valid tenant id",
            IdentityError::UnknownApiKey => "API key is not known",
        }
    }
}

enum KeyKind {
    Hs(HS256Key),
    Rs(Box<RS256PublicKey>),
    Es(Box<ES256PublicKey>),
}

impl KeyKind {
    fn alg(&self) -> &'static str {
        match self {
            KeyKind::Hs(_) => "HS256",
            KeyKind::Rs(_) => "RS256",
            KeyKind::Es(_) => "ES256",
        }
    }

    fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<Map<String, Value>>, jwt_simple::Error> {
        match self {
            KeyKind::Hs(k) => k.verify_token(token, Some(options)),
            KeyKind::Rs(k) => k.verify_token(token, Some(options)),
            KeyKind::Es(k) => k.verify_token(token, Some(options)),
        }
    }
}

struct VerifyKey {
    kid: Option<String>,
    key: KeyKind,
}

/// Verifies bearer JWTs against one policy's JWT settings. Build once per policy.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    issuer: String,
    audiences: Vec<String>,
    tenant_claim: String,
    tier_claim: Option<String>,
    leeway_s: u64,
    max_token_bytes: usize,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("keys", &self.keys.len()).field("issuer", &self.issuer).finish()
    }
}

/// Builds the keys of a JWK set: RSA keys as RS256, P-256 keys as ES256, each with its `kid`.
fn jwks_keys(jwks: &Value) -> Result<Vec<VerifyKey>, PolicyError> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Err(field_error("identity.jwt.jwks", "must be an object with a 'keys' array"));
    };
    let mut out = Vec::with_capacity(keys.len());
    for (i, jwk) in keys.iter().enumerate() {
        let at = format!("identity.jwt.jwks.keys[{i}]");
        let text = jwk.to_string();
        let key = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => KeyKind::Rs(Box::new(
                RS256PublicKey::from_jwk(&text).map_err(|e| field_error(&at, format!("invalid RSA JWK: {e}")))?,
            )),
            Some("EC") => KeyKind::Es(Box::new(
                ES256PublicKey::from_jwk(&text).map_err(|e| field_error(&at, format!("invalid P-256 JWK: {e}")))?,
            )),
            other => return Err(field_error(at, format!("unsupported kty {other:?} (RSA or EC P-256)"))),
        };
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        out.push(VerifyKey { kid, key });
    }
    Ok(out)
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig) -> Result<JwtVerifier, PolicyError> {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for (i, k) in cfg.keys.iter().enumerate() {
            let at = format!("identity.jwt.keys[{i}]");
            let key = match k {
                JwtKey::HS256 { secret, .. } => {
                    if secret.len() < 12 {
                        return Err(field_error(at, "HS256 secret must be at least 12 bytes"));
                    }
                    KeyKind::Hs(HS256Key::from_bytes(secret.as_bytes()))
                }
                JwtKey::RS256 { pem, .. } => KeyKind::Rs(Box::new(
                    RS256PublicKey::from_pem(pem)
                        .map_err(|e| field_error(&at, format!("invalid RS256 public key: {e}")))?,
                )),
                JwtKey::ES256 { pem, .. } => KeyKind::Es(Box::new(
                    ES256PublicKey::from_pem(pem)
                        .map_err(|e| field_error(&at, format!("invalid ES256 public key: {e}")))?,
                )),
            };
            keys.push(VerifyKey { kid: k.kid().map(str::to_string), key });
        }
        if let Some(jwks) = &cfg.jwks {
            keys.extend(jwks_keys(jwks)?);
        }
        Ok(JwtVerifier {
            keys,
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            tenant_claim: cfg.tenant_claim.clone(),
            tier_claim: cfg.tier_claim.clone(),
            leeway_s: u64::from(cfg.leeway_s),
            max_token_bytes: cfg.max_token_bytes,
        })
    }

    /// Verifies the value of an `Authorization` header at time `now_s` (unix seconds).
    pub fn verify_authorization(&self, authorization: Option<&str>, now_s: u64) -> Result<Identity, IdentityError> {
        self.verify_token(Verifier::bearer(authorization)?, now_s)
    }

    /// Verifies a compact JWT at time `now_s`.
    pub fn verify_token(&self, token: &str, now_s: u64) -> Result<Identity, IdentityError> {
        if token.len() > self.max_token_bytes {
            return Err(IdentityError::TokenTooLarge);
        }
        let meta = Token::decode_metadata(token).map_err(|_| IdentityError::MalformedToken)?;
        let alg = meta.algorithm();
        let kid = meta.key_id();
        let mut candidates = self.keys.iter().filter(|k| k.key.alg() == alg).peekable();
        if candidates.peek().is_none() {
            return Err(IdentityError::UnknownKey);
        }
        // With a kid in the token and in the policy, only that key may verify it.
        let by_kid: Vec<&VerifyKey> = match kid {
            Some(kid) => {
                let named: Vec<&VerifyKey> =
                    self.keys.iter().filter(|k| k.key.alg() == alg && k.kid.as_deref() == Some(kid)).collect();
                if named.is_empty() {
                    candidates.filter(|k| k.kid.is_none()).collect()
                } else {
                    named
                }
            }
            None => candidates.collect(),
        };
        if by_kid.is_empty() {
            return Err(IdentityError::UnknownKey);
        }
        let mut last = IdentityError::BadSignature;
        for k in by_kid {
            match k.key.verify(token, self.options(now_s)) {
                Ok(claims) => return self.identity_from(claims),
                Err(e) => {
                    last = map_error(&e);
                    if last != IdentityError::BadSignature {
                        // Claims errors do not depend on which key verified the signature.
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn options(&self, now_s: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(self.audiences.iter().cloned().collect()),
            time_tolerance: Some(Duration::from_secs(self.leeway_s)),
            max_token_length: Some(self.max_token_bytes),
            artificial_time: Some(UnixTimeStamp::from_secs(now_s)),
            ..VerificationOptions::default()
        }
    }

    fn identity_from(&self, claims: JWTClaims<Map<String, Value>>) -> Result<Identity, IdentityError> {
        let expires_at_s = claims.expires_at.ok_or(IdentityError::MissingExpiry)?.as_secs();
        let tenant = match claims.custom.get(&self.tenant_claim) {
            Some(Value::String(s)) => checked_tenant(s)?,
            Some(_) => return Err(IdentityError::InvalidTenant),
            None => return Err(IdentityError::MissingTenant),
        };
        let tier =
            self.tier_claim.as_ref().and_then(|c| claims.custom.get(c)).and_then(Value::as_str).map(str::to_string);
        Ok(Identity { tenant, tier, expires_at_s: Some(expires_at_s), source: Source::Jwt })
    }

    /// Seconds of clock skew tolerated on `exp`.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }
}

fn checked_tenant(tenant: &str) -> Result<String, IdentityError> {
    if is_valid_tenant_id(tenant) {
        Ok(tenant.to_string())
    } else {
        Err(IdentityError::InvalidTenant)
    }
}

/// A compact JWS has three base64url parts; an API key does not.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of a secret, as stored in the policy for API keys and used to key the token cache.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    hmac_sha256::Hash::hash(bytes)
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

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

    fn api_key(&self, key: &str) -> Result<Identity, IdentityError> {
        let (tenant, tier) = self.api_keys.get(&sha256(key.trim().as_bytes())).ok_or(IdentityError::UnknownApiKey)?;
        Ok(Identity { tenant: tenant.clone(), tier: tier.clone(), expires_at_s: None, source: Source::ApiKey })
    }

    /// The bearer token of an `Authorization` value.
    fn bearer(authorization: Option<&str>) -> Result<&str, IdentityError> {
        let value = authorization.map(str::trim).filter(|v| !v.is_empty()).ok_or(IdentityError::MissingCredentials)?;
        let (scheme, token) = value.split_once(' ').ok_or(IdentityError::UnsupportedScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(IdentityError::UnsupportedScheme);
        }
        Ok(token.trim())
    }

    /// Identifies a request, consulting `cache` for JWTs verified before.
    pub fn identify(&self, c: &Credentials, cache: &mut TokenCache, now_s: u64) -> Result<Identity, IdentityError> {
        if let (Some(_), Some(env)) = (&self.jwt_authn, &c.envoy_jwt) {
            let tenant = checked_tenant(env.tenant.as_deref().ok_or(IdentityError::MissingTenant)?)?;
            return Ok(Identity { tenant, tier: env.tier.clone(), expires_at_s: None, source: Source::EnvoyJwtAuthn });
        }
        if let Some(key) = c.api_key.filter(|_| !self.api_keys.is_empty()) {
            return self.api_key(key);
        }
        let token = Self::bearer(c.authorization)?;
        match &self.jwt {
            Some(jwt) if looks_like_jwt(token) || self.api_keys.is_empty() => {
                let digest = sha256(token.as_bytes());
                if let Some(id) = cache.get(&digest, now_s) {
                    return Ok(id);
                }
                let id = jwt.verify_token(token, now_s)?;
                let valid_until = id.expires_at_s.unwrap_or(now_s).saturating_add(jwt.leeway_s);
                cache.insert(digest, id.clone(), valid_until);
                Ok(id)
            }
            _ if !self.api_keys.is_empty() => self.api_key(token),
            _ => Err(IdentityError::MissingCredentials),
        }
    }
}

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

fn map_error(e: &jwt_simple::Error) -> IdentityError {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => IdentityError::Expired,
        Some(JWTError::TokenNotValidYet) | Some(JWTError::ClockDrift) => IdentityError::NotYetValid,
        Some(JWTError::RequiredIssuerMismatch) | Some(JWTError::RequiredIssuerMissing) => IdentityError::WrongIssuer,
        Some(JWTError::RequiredAudienceMismatch) | Some(JWTError::RequiredAudienceMissing) => {
            IdentityError::WrongAudience
        }
        Some(JWTError::TokenTooLong) => IdentityError::TokenTooLarge,
        Some(JWTError::InvalidAuthenticationTag) | Some(JWTError::InvalidSignature) => IdentityError::BadSignature,
        Some(JWTError::AlgorithmMismatch) => IdentityError::UnknownKey,
        _ => IdentityError::MalformedToken,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{policy_json, DEMO_SECRET};
    use crate::policy::Policy;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn verifier() -> JwtVerifier {
        let p = Policy::from_json(policy_json("").as_bytes()).unwrap();
        JwtVerifier::new(p.identity.jwt.as_ref().unwrap()).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// A one-minute token for tenant "a", signed as given.
    fn minted(secret: &str, kid: Option<&str>, issuer: &str, audience: &str) -> String {
        mint(MintKey::Hs256(secret), kid, issuer, audience, claims(json!({"tenant": "a"})), NOW, 60).unwrap()
    }

    fn token(c: Value) -> String {
        mint(MintKey::Hs256(DEMO_SECRET), Some("demo"), "https://auth.example", "fusebox", claims(c), NOW - 10, 3600)
            .unwrap()
    }

    #[test]
    fn valid_token_yields_tenant_and_tier() {
        let t = token(json!({"tenant": "acme", "tier": "pro"}));
        let id = verifier().verify_authorization(Some(&format!("Bearer {t}")), NOW).unwrap();
        assert_eq!(id.tenant, "acme");
        assert_eq!(id.tier.as_deref(), Some("pro"));
        assert_eq!(id.expires_at_s, Some(NOW - 10 + 3600));
    }

    #[test]
    fn missing_header_is_missing_credentials() {
        assert_eq!(verifier().verify_authorization(None, NOW), Err(IdentityError::MissingCredentials));
        assert_eq!(verifier().verify_authorization(Some("  "), NOW), Err(IdentityError::MissingCredentials));
    }

    #[test]
    fn basic_auth_is_an_unsupported_scheme() {
        assert_eq!(verifier().verify_authorization(Some("Basic YTpi"), NOW), Err(IdentityError::UnsupportedScheme));
    }

    #[test]
    fn expired_token_is_rejected() {
        let t = token(json!({"tenant": "acme"}));
        assert_eq!(verifier().verify_token(&t, NOW + 3600 + 31), Err(IdentityError::Expired));
        assert!(verifier().verify_token(&t, NOW + 3600 + 10).is_ok(), "within leeway");
    }

    #[test]
    fn token_used_before_nbf_is_rejected() {
        let t = token(json!({"tenant": "acme"}));
        assert_eq!(verifier().verify_token(&t, NOW - 100), Err(IdentityError::NotYetValid));
    }

    #[test]
    fn wrong_secret_fails_the_signature() {
        let t = minted("another-secret-of-length", Some("demo"), "https://auth.example", "fusebox");
        assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::BadSignature));
    }

    #[test]
    fn wrong_issuer_and_audience_are_rejected() {
        let t = minted(DEMO_SECRET, None, "https://evil", "fusebox");
        assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::WrongIssuer));
        let t = minted(DEMO_SECRET, None, "https://auth.example", "other");
        assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::WrongAudience));
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let t = token(json!({"tenant": "acme"}));
        let parts: Vec<&str> = t.split('.').collect();
        let forged = Base64UrlSafeNoPadding::encode_to_string(
            serde_json::to_vec(
                &json!({"tenant": "victim", "iss": "https://auth.example", "aud": "fusebox", "exp": NOW + 60}),
            )
            .unwrap(),
        )
        .unwrap();
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verifier().verify_token(&tampered, NOW), Err(IdentityError::BadSignature));
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = Base64UrlSafeNoPadding::encode_to_string(br#"{"alg":"none","typ":"JWT"}"#).unwrap();
        let body = Base64UrlSafeNoPadding::encode_to_string(
            serde_json::to_vec(
                &json!({"tenant": "acme", "iss": "https://auth.example", "aud": "fusebox", "exp": NOW + 60}),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(verifier().verify_token(&format!("{header}.{body}."), NOW), Err(IdentityError::UnknownKey));
    }

    #[test]
    fn garbage_is_a_malformed_token() {
        assert_eq!(verifier().verify_token("not.a.jwt", NOW), Err(IdentityError::MalformedToken));
        assert_eq!(verifier().verify_token("%%%", NOW), Err(IdentityError::MalformedToken));
        assert_eq!(verifier().verify_token("", NOW), Err(IdentityError::MalformedToken));
    }

    #[test]
    fn oversized_token_is_rejected_before_parsing() {
        assert_eq!(verifier().verify_token(&"a".repeat(9000), NOW), Err(IdentityError::TokenTooLarge));
    }

    #[test]
    fn missing_or_unsafe_tenant_claims_are_rejected() {
        assert_eq!(verifier().verify_token(&token(json!({"sub": "x"})), NOW), Err(IdentityError::MissingTenant));
        assert_eq!(verifier().verify_token(&token(json!({"tenant": 42})), NOW), Err(IdentityError::InvalidTenant));
        assert_eq!(
            verifier().verify_token(&token(json!({"tenant": "a\r\nb"})), NOW),
            Err(IdentityError::InvalidTenant)
        );
    }

    #[test]
    fn unknown_kid_with_only_named_keys_is_an_unknown_key() {
        let t = minted(DEMO_SECRET, Some("rotated-away"), "https://auth.example", "fusebox");
        assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::UnknownKey));
    }

    #[test]
    fn token_without_exp_is_rejected() {
        let mut c = claims_for("a");
        c.expires_at = None;
        let t = HS256Key::from_bytes(DEMO_SECRET.as_bytes()).authenticate(c).unwrap();
        assert_eq!(verifier().verify_token(&t, NOW), Err(IdentityError::MissingExpiry));
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/keys").join(name))
            .unwrap()
    }

    fn asymmetric_verifier(keys: Value) -> JwtVerifier {
        let cfg: JwtConfig = serde_json::from_value(json!({
            "issuer": "https://auth.example", "audiences": ["fusebox"], "keys": keys
        }))
        .unwrap();
        JwtVerifier::new(&cfg).unwrap()
    }

    fn claims_for(tenant: &str) -> JWTClaims<Map<String, Value>> {
        let mut c = Claims::with_custom_claims(claims(json!({"tenant": tenant})), Duration::from_secs(600))
            .with_issuer("https://auth.example")
            .with_audience("fusebox");
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
        c.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
        c
    }

    #[test]
    fn rs256_token_verifies_against_the_public_key() {
        let v = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": fixture("rs256-public.pem")}]));
        let pair = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("r1");
        let t = pair.sign(claims_for("acme")).unwrap();
        assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "acme");
    }

    #[test]
    fn a_minted_rs256_token_verifies_against_the_public_key() {
        let v = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": fixture("rs256-public.pem")}]));
        let private = fixture("rs256-private.pem");
        let t = mint(
            MintKey::Rs256Pem(&private),
            Some("r1"),
            "https://auth.example",
            "fusebox",
            claims(json!({"tenant": "acme"})),
            NOW,
            600,
        )
        .unwrap();
        assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "acme");
        assert!(mint(MintKey::Rs256Pem("not a key"), None, "i", "a", claims(json!({})), NOW, 60).is_err());
    }

    #[test]
    fn es256_token_verifies_against_the_public_key() {
        let v = asymmetric_verifier(json!([{"alg": "ES256", "pem": fixture("es256-public.pem")}]));
        let pair = ES256KeyPair::from_pem(&fixture("es256-private.pem")).unwrap();
        let t = pair.sign(claims_for("globex")).unwrap();
        assert_eq!(v.verify_token(&t, NOW).unwrap().tenant, "globex");
    }

    #[test]
    fn hs256_token_keyed_with_the_rsa_public_key_is_refused() {
        // Algorithm confusion: the attacker uses the (public) RSA key bytes as an HMAC secret.
        let public = fixture("rs256-public.pem");
        let forged =
            HS256Key::from_bytes(public.as_bytes()).with_key_id("r1").authenticate(claims_for("victim")).unwrap();
        let rsa_only = asymmetric_verifier(json!([{"alg": "RS256", "kid": "r1", "pem": public}]));
        assert_eq!(rsa_only.verify_token(&forged, NOW), Err(IdentityError::UnknownKey));
        let mixed = asymmetric_verifier(json!([
            {"alg": "RS256", "kid": "r1", "pem": public},
            {"alg": "HS256", "secret": DEMO_SECRET}
        ]));
        assert_eq!(mixed.verify_token(&forged, NOW), Err(IdentityError::BadSignature));
    }

    #[test]
    fn es256_token_signed_by_another_key_fails_the_signature() {
        let v = asymmetric_verifier(json!([{"alg": "ES256", "pem": fixture("es256-public.pem")}]));
        let other = ES256KeyPair::generate();
        assert_eq!(v.verify_token(&other.sign(claims_for("acme")).unwrap(), NOW), Err(IdentityError::BadSignature));
    }

    #[test]
    fn a_key_that_is_not_a_public_key_is_refused_at_policy_load() {
        let cfg: JwtConfig = serde_json::from_value(json!({
            "issuer": "i", "audiences": ["a"], "keys": [{"alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}]
        }))
        .unwrap();
        let err = JwtVerifier::new(&cfg).unwrap_err();
        assert_eq!(err.field, "identity.jwt.keys[0]");
    }

    #[test]
    fn jwks_keys_verify_by_kid_and_a_rotated_out_kid_is_unknown() {
        let rsa = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("2024-a");
        let ec = ES256KeyPair::from_pem(&fixture("es256-private.pem")).unwrap().with_key_id("2024-b");
        let mut rsa_jwk: Value = serde_json::from_str(&rsa.public_key().to_jwk()).unwrap();
        rsa_jwk["kid"] = json!("2024-a");
        let mut ec_jwk: Value = serde_json::from_str(&ec.public_key().to_jwk()).unwrap();
        ec_jwk["kid"] = json!("2024-b");
        let cfg: JwtConfig = serde_json::from_value(json!({
            "issuer": "https://auth.example", "audiences": ["fusebox"], "jwks": {"keys": [rsa_jwk, ec_jwk]}
        }))
        .unwrap();
        let v = JwtVerifier::new(&cfg).unwrap();
        assert_eq!(v.verify_token(&rsa.sign(claims_for("acme")).unwrap(), NOW).unwrap().tenant, "acme");
        assert_eq!(v.verify_token(&ec.sign(claims_for("globex")).unwrap(), NOW).unwrap().tenant, "globex");
        let retired = RS256KeyPair::from_pem(&fixture("rs256-private.pem")).unwrap().with_key_id("2023-z");
        assert_eq!(v.verify_token(&retired.sign(claims_for("acme")).unwrap(), NOW), Err(IdentityError::UnknownKey));
    }

    #[test]
    fn a_bad_jwk_is_refused_naming_its_index() {
        let cfg: JwtConfig = serde_json::from_value(json!({
            "issuer": "i", "audiences": ["a"], "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}
        }))
        .unwrap();
        assert_eq!(JwtVerifier::new(&cfg).unwrap_err().field, "identity.jwt.jwks.keys[0]");
    }

    fn full_verifier(extra: Value) -> Verifier {
        let mut identity = json!({
            "jwt": {"issuer": "https://auth.example", "audiences": ["fusebox"],
                    "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]},
            "api_keys": [{"sha256": hex(&sha256(b"sk-live-acme-0001")), "tenant": "acme", "tier": "pro", "name": "ci"}]
        });
        identity.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Verifier::new(&serde_json::from_value(identity).unwrap()).unwrap()
    }

    #[test]
    fn api_key_in_x_api_key_or_bearer_identifies_its_tenant() {
        let v = full_verifier(json!({}));
        let mut cache = TokenCache::new(8);
        let by_header = Credentials { api_key: Some("sk-live-acme-0001"), ..Credentials::default() };
        let id = v.identify(&by_header, &mut cache, NOW).unwrap();
        assert_eq!((id.tenant.as_str(), id.tier.as_deref(), id.source), ("acme", Some("pro"), Source::ApiKey));
        let by_bearer = Credentials { authorization: Some("Bearer sk-live-acme-0001"), ..Credentials::default() };
        assert_eq!(v.identify(&by_bearer, &mut cache, NOW).unwrap().tenant, "acme");
        let wrong = Credentials { api_key: Some("sk-live-acme-0002"), ..Credentials::default() };
        assert_eq!(v.identify(&wrong, &mut cache, NOW), Err(IdentityError::UnknownApiKey));
    }

    #[test]
    fn bearer_jwt_still_works_next_to_api_keys() {
        let v = full_verifier(json!({}));
        let t = token(json!({"tenant": "globex"}));
        let c = Credentials { authorization: Some(&format!("Bearer {t}")), ..Credentials::default() };
        let id = v.identify(&c, &mut TokenCache::new(8), NOW).unwrap();
        assert_eq!((id.tenant.as_str(), id.source), ("globex", Source::Jwt));
    }

    #[test]
    fn envoy_jwt_authn_payload_is_used_only_when_configured() {
        let env = EnvoyJwt { tenant: Some("initech".into()), tier: None };
        let c = Credentials { envoy_jwt: Some(env.clone()), ..Credentials::default() };
        let without = full_verifier(json!({}));
        assert_eq!(without.identify(&c, &mut TokenCache::new(8), NOW), Err(IdentityError::MissingCredentials));
        let with = full_verifier(json!({"jwt_authn": {}}));
        let id = with.identify(&c, &mut TokenCache::new(8), NOW).unwrap();
        assert_eq!((id.tenant.as_str(), id.source), ("initech", Source::EnvoyJwtAuthn));
        let bad = Credentials {
            envoy_jwt: Some(EnvoyJwt { tenant: Some("a b".into()), tier: None }),
            ..Credentials::default()
        };
        assert_eq!(with.identify(&bad, &mut TokenCache::new(8), NOW), Err(IdentityError::InvalidTenant));
    }

    #[test]
    fn cached_tokens_skip_verification_until_they_expire() {
        let v = full_verifier(json!({}));
        let mut cache = TokenCache::new(8);
        let t = token(json!({"tenant": "acme"}));
        let auth = format!("Bearer {t}");
        let c = Credentials { authorization: Some(&auth), ..Credentials::default() };
        v.identify(&c, &mut cache, NOW).unwrap();
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&sha256(t.as_bytes()), NOW).is_some());
        // exp = NOW - 10 + 3600, plus 30 s leeway: gone after that, and then refused.
        assert!(cache.get(&sha256(t.as_bytes()), NOW - 10 + 3600 + 31).is_none());
        assert_eq!(v.identify(&c, &mut cache, NOW + 3700), Err(IdentityError::Expired));
    }

    #[test]
    fn the_token_cache_stays_bounded() {
        let mut cache = TokenCache::new(4);
        let id = Identity { tenant: "t".into(), tier: None, expires_at_s: None, source: Source::Jwt };
        for i in 0..100u8 {
            cache.insert([i; 32], id.clone(), u64::MAX);
            assert!(cache.len() <= 8);
        }
        assert!(cache.get(&[99; 32], 0).is_some());
        assert!(cache.get(&[0; 32], 0).is_none());
    }
}
