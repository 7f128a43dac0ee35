//! Who may call: the admin token for writes, the filter or admin token for reads (once any
//! token is configured), compared in constant time; and the actor named in the audit log.

use super::state::Config;
use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use fusebox_engine::identity::sha256;

fn digest_eq(a: &str, b: &str) -> bool {
    // Comparing digests keeps the comparison time independent of where the tokens differ.
    let (a, b) = (sha256(a.as_bytes()), sha256(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

pub(super) fn require_admin(cfg: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &cfg.admin_token else {
        return Err(ApiError::forbidden(
            "the admin API is disabled: start fusebox-control with --admin-token (or FUSEBOX_ADMIN_TOKEN)",
        ));
    };
    match bearer(headers) {
        Some(given) if digest_eq(given, expected) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the bearer token is not the admin token")),
        None => Err(ApiError::unauthorized("an admin bearer token is required")),
    }
}

/// Reads need the filter or the admin token once either is configured.
pub(super) fn require_reader(cfg: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let tokens: Vec<&String> = cfg.admin_token.iter().chain(cfg.filter_token.iter()).collect();
    if tokens.is_empty() {
        return Ok(());
    }
    match bearer(headers) {
        Some(given) if tokens.iter().any(|t| digest_eq(given, t)) => Ok(()),
        _ => Err(ApiError::unauthorized("a valid bearer token is required")),
    }
}

/// Who made a change, for the audit log: `x-fusebox-actor` (the CLI sends the user name).
pub(super) fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-fusebox-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| "admin".to_string(), |a| format!("admin:{a}"))
}
