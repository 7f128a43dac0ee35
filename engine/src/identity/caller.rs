//! Who a request is, once verified, and what it presented.

use super::error::IdentityError;
use crate::ids::is_valid_tenant_id;

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
    /// The scopes beside the tenant (org, team, user, ...) the verified claims or the key's
    /// entry place it in, in the policy's order of scopes.
    pub scopes: Vec<Membership>,
}

/// A caller's place in one scope: `org` = `initech`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub scope: String,
    pub value: String,
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
    /// (scope, claim value) for each scope claim the payload has.
    pub scopes: Vec<(String, String)>,
}

/// The bearer token of an `Authorization` value.
pub(crate) fn bearer(authorization: Option<&str>) -> Result<&str, IdentityError> {
    let value = authorization.map(str::trim).filter(|v| !v.is_empty()).ok_or(IdentityError::MissingCredentials)?;
    let (scheme, token) = value.split_once(' ').ok_or(IdentityError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(IdentityError::UnsupportedScheme);
    }
    Ok(token.trim())
}

/// The memberships named by `(scope, value)` pairs from a verified source; a value that is
/// not a valid id refuses the credential (a scope is a limit: it must not be dodged by a typo).
pub(crate) fn checked_scopes<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Membership>, IdentityError> {
    pairs
        .map(|(scope, value)| {
            is_valid_tenant_id(value)
                .then(|| Membership { scope: scope.to_string(), value: value.to_string() })
                .ok_or(IdentityError::InvalidScope)
        })
        .collect()
}

/// A tenant id from a verified source, if it is one fusebox accepts.
pub(crate) fn checked_tenant(tenant: &str) -> Result<String, IdentityError> {
    if is_valid_tenant_id(tenant) {
        Ok(tenant.to_string())
    } else {
        Err(IdentityError::InvalidTenant)
    }
}
