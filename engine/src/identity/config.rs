//! Where tenant identity may come from, as the policy's `identity` section declares it.

use crate::ids::is_valid_tenant_id;
use crate::strict::{field_error, PolicyError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg", deny_unknown_fields)]
pub enum JwtKey {
    /// Shared secret (UTF-8, at least 12 bytes).
    HS256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        secret: String,
    },
    /// RSA public key in PEM (at least 2048 bits).
    RS256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        pem: String,
    },
    /// P-256 public key in PEM.
    ES256 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kid: Option<String>,
        pem: String,
    },
}

impl JwtKey {
    pub fn kid(&self) -> Option<&str> {
        match self {
            JwtKey::HS256 { kid, .. } | JwtKey::RS256 { kid, .. } | JwtKey::ES256 { kid, .. } => kid.as_deref(),
        }
    }
}

fn default_tenant_claim() -> String {
    "tenant".to_string()
}
fn default_tier_claim() -> Option<String> {
    Some("tier".to_string())
}
fn default_leeway_s() -> u32 {
    30
}
fn default_max_lifetime_s() -> u64 {
    86_400
}
fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Claim holding the tenant id.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the tier; a tier set for the tenant in the policy wins over it.
    #[serde(default = "default_tier_claim")]
    pub tier_claim: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u32,
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// A token whose `exp` is further away than this is refused: a stolen token must not be
    /// good for years. Seconds; default one day.
    #[serde(default = "default_max_lifetime_s")]
    pub max_lifetime_s: u64,
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// A JWK set (`{"keys": [...]}`, RSA and P-256 public keys with their `kid`), as served by
    /// an identity provider. Rotate keys by publishing a new policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// An API key, stored only as the SHA-256 digest of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Lowercase hex SHA-256 of the key (`fusebox-control hash-key` prints it).
    pub sha256: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// A label for operators (never used for matching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key's place in the policy's scopes: `{"org": "initech", "team": "ml"}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scopes: std::collections::BTreeMap<String, String>,
}

fn default_jwt_authn_filter() -> String {
    "envoy.filters.http.jwt_authn".to_string()
}
fn default_payload_key() -> String {
    "jwt_payload".to_string()
}

/// Trust the payload Envoy's own `jwt_authn` filter verified and put in dynamic metadata
/// (`payload_in_metadata`). Only safe when `jwt_authn` runs before fusebox on the same routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthnConfig {
    #[serde(default = "default_jwt_authn_filter")]
    pub filter: String,
    /// The `payload_in_metadata` name configured on the jwt_authn provider.
    #[serde(default = "default_payload_key")]
    pub payload_key: String,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default = "default_tier_claim")]
    pub tier_claim: Option<String>,
}

/// Where tenant identity may come from; at least one source is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_authn: Option<JwtAuthnConfig>,
}

impl IdentityConfig {
    /// Checks what the schema cannot; `is_tier` tells which tier names exist. The keys and
    /// digests themselves are checked when the verifier is built from this.
    pub(crate) fn validate(&self, is_tier: impl Fn(&str) -> bool) -> Result<(), PolicyError> {
        if self.jwt.is_none() && self.api_keys.is_empty() && self.jwt_authn.is_none() {
            return Err(field_error("identity", "configure at least one of 'jwt', 'api_keys', 'jwt_authn'"));
        }
        if let Some(jwt) = &self.jwt {
            if jwt.issuer.is_empty() {
                return Err(field_error("identity.jwt.issuer", "must not be empty"));
            }
            if jwt.audiences.is_empty() || jwt.audiences.iter().any(String::is_empty) {
                return Err(field_error("identity.jwt.audiences", "at least one non-empty audience is required"));
            }
            if jwt.tenant_claim.is_empty() {
                return Err(field_error("identity.jwt.tenant_claim", "must not be empty"));
            }
            if !(256..=65_536).contains(&jwt.max_token_bytes) {
                return Err(field_error("identity.jwt.max_token_bytes", "must be between 256 and 65536"));
            }
            if !(60..=31_536_000).contains(&jwt.max_lifetime_s) {
                return Err(field_error("identity.jwt.max_lifetime_s", "must be between 60 and 31536000"));
            }
            if jwt.keys.is_empty() && jwt.jwks.is_none() {
                return Err(field_error("identity.jwt.keys", "at least one key (or a 'jwks') is required"));
            }
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            if !is_valid_tenant_id(&k.tenant) {
                return Err(field_error(
                    format!("identity.api_keys[{i}].tenant"),
                    "tenant ids are 1-128 of [A-Za-z0-9-_.:@]",
                ));
            }
            if let Some(tier) = k.tier.as_deref().filter(|t| !is_tier(t)) {
                return Err(field_error(format!("identity.api_keys[{i}].tier"), format!("unknown tier '{tier}'")));
            }
        }
        Ok(())
    }
}
