//! Tenant identity from verified credentials, in this order:
//! 1. the payload Envoy's own `jwt_authn` filter verified (when configured and present);
//! 2. an API key (`x-api-key`, or a bearer value that is not a JWT), matched by SHA-256 digest;
//! 3. a bearer JWT verified against the policy's keys (HS256, RS256, ES256, or a JWK set), with
//!    `iss`, `aud`, `exp` (required) and `nbf` checked against a clock passed in by the caller.
//!
//! Nothing the client can simply assert is trusted.

mod cache;
mod caller;
mod compact;
mod config;
mod digest;
mod error;
#[cfg(test)]
mod hs256_tests;
mod jwt;
mod mint;
#[cfg(test)]
mod tests;
mod verifier;

pub use cache::{TokenCache, TokenKey, MAX_INLINE_TOKEN};
pub use caller::{Credentials, EnvoyJwt, Identity, Membership, Source};
pub use config::{ApiKey, IdentityConfig, JwtAuthnConfig, JwtConfig, JwtKey};
pub use digest::{hex, parse_digest, sha256};
pub use error::IdentityError;
pub use jwt::JwtVerifier;
pub use mint::{mint, MintKey};
pub use verifier::Verifier;
