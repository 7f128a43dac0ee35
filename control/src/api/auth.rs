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

/// Reads need the filter, a node or the admin token once any is configured.
pub(super) fn require_reader(cfg: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let tokens: Vec<&String> = cfg.admin_token.iter().chain(cfg.filter_token.iter()).collect();
    if tokens.is_empty() && cfg.node_tokens.is_empty() {
        return Ok(());
    }
    match bearer(headers) {
        Some(given) if tokens.iter().any(|t| digest_eq(given, t)) => Ok(()),
        Some(given) if cfg.node_tokens.node_of(given).is_some() => Ok(()),
        _ => Err(ApiError::unauthorized("a valid bearer token is required")),
    }
}

/// Who may post events for `source`: with node tokens configured, only the token of that node
/// (the shared filter token and the admin token cannot speak for an Envoy); otherwise any reader.
pub(super) fn require_node(cfg: &Config, headers: &HeaderMap, source: &str) -> Result<(), ApiError> {
    if cfg.node_tokens.is_empty() {
        return require_reader(cfg, headers);
    }
    let Some(given) = bearer(headers) else {
        return Err(ApiError::unauthorized("events need this node's bearer token"));
    };
    match cfg.node_tokens.node_of(given) {
        Some(node) if node == source => Ok(()),
        Some(node) => {
            tracing::warn!("refused events for node '{source}' posted with the token of node '{node}'");
            Err(ApiError::forbidden(format!("this token belongs to node '{node}', not '{source}'")))
        }
        None if require_reader(cfg, headers).is_ok() => {
            tracing::warn!("refused events for node '{source}' posted without a node token");
            Err(ApiError::forbidden("events need a node token (--node-tokens); this token can only read"))
        }
        None => Err(ApiError::unauthorized("a valid bearer token is required")),
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
