//! Who is calling, from the bearer token, and what they may do. Envoys read the policy and
//! post events (the filter token, or each node's own token); operators read, and by role run
//! the breaker or change the policy. The legacy admin token is the operator `admin` with the
//! admin role. The audit actor is always the verified operator's name, never a header.

use super::state::Config;
use crate::access::operators::{Operator, Role};
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

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Caller {
    /// No token of any kind is configured: reads are open, writes disabled.
    Open,
    Operator(Operator),
    /// The shared filter token.
    Filter,
    /// An Envoy's own token (`--node-tokens`).
    Node(String),
}

impl Caller {
    /// What the audit log calls a caller refused a write.
    fn name(&self) -> String {
        match self {
            Caller::Open => "anonymous".into(),
            Caller::Operator(o) => o.name.clone(),
            Caller::Filter => "filter".into(),
            Caller::Node(n) => format!("node:{n}"),
        }
    }

    /// `GET /v1/whoami`: who a token is, and what it may do.
    pub(super) fn describe(&self) -> serde_json::Value {
        match self {
            Caller::Open => serde_json::json!({"kind": "anonymous", "may": "read"}),
            Caller::Operator(o) => serde_json::json!({"kind": "operator", "name": o.name, "role": o.role}),
            Caller::Filter => serde_json::json!({"kind": "filter", "may": "read, post events"}),
            Caller::Node(n) => serde_json::json!({"kind": "node", "name": n, "may": "read, post its own events"}),
        }
    }
}

/// The caller of a request: `401` for a missing or unknown token once any token is configured.
pub(super) fn caller(cfg: &Config, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let operators = cfg.operators.current();
    let configured =
        cfg.admin_token.is_some() || cfg.filter_token.is_some() || !cfg.node_tokens.is_empty() || !operators.is_empty();
    if !configured {
        return Ok(Caller::Open);
    }
    let Some(given) = bearer(headers) else {
        return Err(ApiError::unauthorized("a bearer token is required"));
    };
    if cfg.admin_token.as_deref().is_some_and(|t| digest_eq(given, t)) {
        return Ok(Caller::Operator(Operator { name: "admin".into(), role: Role::Admin }));
    }
    if let Some(o) = operators.who(given) {
        return Ok(Caller::Operator(o.clone()));
    }
    if cfg.filter_token.as_deref().is_some_and(|t| digest_eq(given, t)) {
        return Ok(Caller::Filter);
    }
    if let Some(node) = cfg.node_tokens.node_of(given) {
        return Ok(Caller::Node(node.to_string()));
    }
    Err(ApiError::unauthorized("the bearer token is not known here"))
}

/// Reads: any verified caller (anyone while no token is configured).
pub(super) fn require_reader(cfg: &Config, headers: &HeaderMap) -> Result<Caller, ApiError> {
    caller(cfg, headers)
}

/// A write refused to a verified caller: the refusal is audited under `actor`.
pub(super) struct Refused {
    pub(super) error: ApiError,
    /// `None` when nobody was verified (a missing or unknown token is not audited: anyone
    /// could fill the log with those).
    pub(super) actor: Option<(String, &'static str)>,
}

/// A write needing `need`: the verified operator, or why not.
pub(super) fn require_role(cfg: &Config, headers: &HeaderMap, need: Role) -> Result<Operator, Refused> {
    let caller = caller(cfg, headers).map_err(|error| Refused { error, actor: None })?;
    let refused = |error: ApiError, role: &'static str| Refused { error, actor: Some((caller.name(), role)) };
    match &caller {
        Caller::Operator(o) if o.role >= need => Ok(o.clone()),
        Caller::Operator(o) => Err(refused(
            ApiError::forbidden(format!(
                "'{}' is a {}; this needs the {} role",
                o.name,
                o.role.as_str(),
                need.as_str()
            )),
            o.role.as_str(),
        )),
        Caller::Open => Err(Refused {
            error: ApiError::forbidden(
                "writes are disabled: start fusebox-control with --operators FILE or --admin-token",
            ),
            actor: None,
        }),
        Caller::Filter | Caller::Node(_) => Err(refused(
            ApiError::forbidden("an Envoy's token can read the policy and post events, nothing else"),
            "envoy",
        )),
    }
}

/// Who may post events for `source`: with node tokens configured, only the token of that node
/// (no other token can speak for an Envoy); otherwise the filter token.
pub(super) fn require_node(cfg: &Config, headers: &HeaderMap, source: &str) -> Result<(), ApiError> {
    match caller(cfg, headers)? {
        Caller::Node(node) if node == source => Ok(()),
        Caller::Node(node) => {
            tracing::warn!("refused events for node '{source}' posted with the token of node '{node}'");
            Err(ApiError::forbidden(format!("this token belongs to node '{node}', not '{source}'")))
        }
        Caller::Filter | Caller::Open if cfg.node_tokens.is_empty() => Ok(()),
        Caller::Filter | Caller::Open => {
            tracing::warn!("refused events for node '{source}' posted without a node token");
            Err(ApiError::forbidden("events need a node token (--node-tokens); this token can only read"))
        }
        Caller::Operator(o) => {
            tracing::warn!("refused events for node '{source}' posted with operator '{}'s token", o.name);
            Err(ApiError::forbidden("events come from Envoys; an operator's token cannot post them"))
        }
    }
}
