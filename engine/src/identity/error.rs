//! Why a request has no usable identity: each cause is a `401` with a stable code.

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
    LifetimeTooLong,
    WrongIssuer,
    WrongAudience,
    MissingTenant,
    InvalidTenant,
    UnknownApiKey,
    InvalidScope,
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
            IdentityError::LifetimeTooLong => "token_lifetime_too_long",
            IdentityError::WrongIssuer => "invalid_issuer",
            IdentityError::WrongAudience => "invalid_audience",
            IdentityError::MissingTenant => "missing_tenant_claim",
            IdentityError::InvalidTenant => "invalid_tenant_claim",
            IdentityError::UnknownApiKey => "invalid_api_key",
            IdentityError::InvalidScope => "invalid_scope_claim",
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
            IdentityError::LifetimeTooLong => "bearer token expires further ahead than this gateway accepts",
            IdentityError::WrongIssuer => "bearer token issuer is not accepted",
            IdentityError::WrongAudience => "bearer token audience is not accepted",
            IdentityError::MissingTenant => "bearer token has no tenant claim",
            IdentityError::InvalidTenant => "tenant claim is not a valid tenant id",
            IdentityError::InvalidScope => "a scope claim (org, team, ...) is not a valid id",
            IdentityError::UnknownApiKey => "API key is not known",
        }
    }
}
