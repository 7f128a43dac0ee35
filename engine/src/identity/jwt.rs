//! Bearer JWTs: the keys of one policy (HS256, RS256, ES256, JWK sets) and the claims checks
//! (`iss`, `aud`, `exp` required, `nbf`) against a clock the caller passes in.

use super::caller::{bearer, checked_scopes, checked_tenant, Identity, Source};
use super::compact::{Compact, Hs256Key};
use super::config::{JwtConfig, JwtKey};
use super::error::IdentityError;
use crate::strict::{field_error, PolicyError};
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde_json::{Map, Value};

enum KeyKind {
    Hs(Hs256Key),
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

    /// Whether this key signed the token. HS256 is checked on the split token directly; RS256
    /// and ES256 by jwt-simple, whose own claims checks run too (the same as ours, see
    /// [`JwtVerifier::identity_from`], which then reads the claims).
    fn signed(&self, token: &str, compact: &Compact<'_>, options: impl FnOnce() -> VerificationOptions) -> Signed {
        let checked = match self {
            KeyKind::Hs(k) => {
                return match compact.hs256_signed_by(k) {
                    Ok(true) => Signed::Yes,
                    Ok(false) => Signed::No(IdentityError::BadSignature),
                    Err(e) => Signed::No(e),
                }
            }
            KeyKind::Rs(k) => k.verify_token::<NoCustomClaims>(token, Some(options())),
            KeyKind::Es(k) => k.verify_token::<NoCustomClaims>(token, Some(options())),
        };
        match checked {
            Ok(_) => Signed::Yes,
            Err(e) => Signed::No(map_error(&e)),
        }
    }
}

enum Signed {
    Yes,
    /// Not by this key, or not acceptable whichever key signed it.
    No(IdentityError),
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
    /// (scope, claim) for each of the policy's scopes.
    scope_claims: Vec<(String, String)>,
    leeway_s: u64,
    max_token_bytes: usize,
    max_lifetime_s: u64,
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
                    KeyKind::Hs(Hs256Key::new(secret.as_bytes()))
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
            scope_claims: Vec::new(),
            leeway_s: u64::from(cfg.leeway_s),
            max_token_bytes: cfg.max_token_bytes,
            max_lifetime_s: cfg.max_lifetime_s,
        })
    }

    /// Verifies the value of an `Authorization` header at time `now_s` (unix seconds).
    pub fn verify_authorization(&self, authorization: Option<&str>, now_s: u64) -> Result<Identity, IdentityError> {
        self.verify_token(bearer(authorization)?, now_s)
    }

    /// Verifies a compact JWT at time `now_s`.
    pub fn verify_token(&self, token: &str, now_s: u64) -> Result<Identity, IdentityError> {
        if token.len() > self.max_token_bytes {
            return Err(IdentityError::TokenTooLarge);
        }
        let compact = Compact::parse(token)?;
        let alg = compact.alg();
        let kid = compact.kid();
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
            match k.key.signed(token, &compact, || self.options(now_s)) {
                Signed::Yes => return self.identity_from(&compact.claims()?, now_s),
                // Claims errors do not depend on which key verified the signature.
                Signed::No(e) if e != IdentityError::BadSignature => return Err(e),
                Signed::No(e) => last = e,
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

    /// The caller a signed token's claims name, once they pass the checks, in jwt-simple's
    /// order (so every algorithm refuses a token for the same reason): `iat` and `nbf` not in the
    /// future, `exp` not past, `iss`, `aud`; then `exp` present and not too far ahead.
    fn identity_from(&self, claims: &Map<String, Value>, now_s: u64) -> Result<Identity, IdentityError> {
        let time = |name: &str| claims.get(name).map(numeric_date).transpose();
        let (issued_at, not_before, expires_at) = (time("iat")?, time("nbf")?, time("exp")?);
        let ahead = now_s.saturating_add(self.leeway_s);
        if issued_at.is_some_and(|iat| iat > ahead) || not_before.is_some_and(|nbf| nbf > ahead) {
            return Err(IdentityError::NotYetValid);
        }
        if expires_at.is_some_and(|exp| now_s < self.leeway_s || now_s - self.leeway_s > exp) {
            return Err(IdentityError::Expired);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(IdentityError::WrongIssuer);
        }
        let audience_ok = |a: &Value| a.as_str().is_some_and(|a| self.audiences.iter().any(|ok| ok == a));
        let audience = match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(audience_ok),
            Some(aud) => audience_ok(aud),
            None => false,
        };
        if !audience {
            return Err(IdentityError::WrongAudience);
        }
        let expires_at_s = expires_at.ok_or(IdentityError::MissingExpiry)?;
        if expires_at_s.saturating_sub(now_s) > self.max_lifetime_s.saturating_add(self.leeway_s) {
            return Err(IdentityError::LifetimeTooLong);
        }
        let tenant = match claims.get(&self.tenant_claim) {
            Some(Value::String(s)) => checked_tenant(s)?,
            Some(_) => return Err(IdentityError::InvalidTenant),
            None => return Err(IdentityError::MissingTenant),
        };
        let tier = self.tier_claim.as_ref().and_then(|c| claims.get(c)).and_then(Value::as_str).map(str::to_string);
        let mut pairs = Vec::with_capacity(self.scope_claims.len());
        for (scope, claim) in &self.scope_claims {
            match claims.get(claim) {
                Some(Value::String(v)) => pairs.push((scope.as_str(), v.as_str())),
                Some(_) => return Err(IdentityError::InvalidScope),
                None => {}
            }
        }
        let scopes = checked_scopes(pairs.into_iter())?;
        Ok(Identity { tenant, tier, expires_at_s: Some(expires_at_s), source: Source::Jwt, scopes })
    }

    /// Reads these claims as the caller's scopes: `(scope, claim)` pairs.
    pub(crate) fn set_scope_claims(&mut self, claims: Vec<(String, String)>) {
        self.scope_claims = claims;
    }

    /// Seconds of clock skew tolerated on `exp`.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }
}

/// A NumericDate claim in whole seconds: a non-negative number (a fraction is dropped).
fn numeric_date(v: &Value) -> Result<u64, IdentityError> {
    match v.as_u64() {
        Some(s) => Ok(s),
        None => match v.as_f64() {
            // Saturating, as `as` is for floats: a date past u64 is simply far away.
            Some(f) if f >= 0.0 => Ok(f as u64),
            _ => Err(IdentityError::MalformedToken),
        },
    }
}

pub(super) fn map_error(e: &jwt_simple::Error) -> IdentityError {
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
