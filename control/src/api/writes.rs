//! The admin writes: each one authorized, idempotent by `Idempotency-Key`, applied as one
//! policy change (validated by the engine, audited) and then served.

use super::auth::require_role;
use super::idempotency;
use super::reads::valid_tenant;
use super::state::AppState;
use crate::access::operators::Role;
use crate::error::ApiError;
use crate::policy_ops::{self, BreakerAction, Change};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fusebox_engine::budget::Budget;
use fusebox_engine::policy::{Limits, Policy, PolicyError, TenantPolicy};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Parses a JSON body strictly, prefixing the failing field with `at`.
fn parse_body<T>(body: &[u8], at: &str, parse: impl Fn(&[u8]) -> Result<T, PolicyError>) -> Result<T, ApiError> {
    parse(body).map_err(|e| ApiError::invalid_policy_at(at, e))
}

fn json_response(status: u16, body: &Value, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(body)).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// A write as the router sees it, before its body is read.
struct Write {
    method: Method,
    path: String,
    /// The role it needs.
    need: Role,
    /// What the audit log calls it when it is refused.
    action: &'static str,
    tenant: Option<String>,
}

impl Write {
    fn new(method: Method, path: String, need: Role, action: &'static str) -> Write {
        Write { method, path, need, action, tenant: None }
    }

    fn of_tenant(self, tenant: &str) -> Write {
        Write { tenant: Some(tenant.to_string()), ..self }
    }
}

/// The verified operator making `w`; a verified caller without the role is refused and the
/// refusal is audited.
async fn authorize(state: &AppState, headers: &HeaderMap, w: &Write) -> Result<String, ApiError> {
    let refused = match require_role(&state.0.config, headers, w.need) {
        Ok(operator) => return Ok(operator.name),
        Err(r) => r,
    };
    if let Some((actor, role)) = refused.actor {
        tracing::warn!("refused {} {} to '{actor}' ({role})", w.method, w.path);
        let refusal = policy_ops::Refusal {
            actor,
            action: w.action,
            tenant: w.tenant.clone(),
            details: json!({"method": w.method.as_str(), "path": w.path, "role": role, "needs": w.need.as_str()}),
        };
        state.blocking(move |inner| policy_ops::record_refusal(&inner.db, &refusal)).await?;
    }
    Err(refused.error)
}

/// Runs an operator's write: authorization, `Idempotency-Key`, the change, the new policy served.
async fn write(
    state: AppState,
    headers: HeaderMap,
    w: Write,
    body: Bytes,
    change: impl FnOnce(&[u8]) -> Result<Change, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let actor = authorize(&state, &headers, &w).await?;
    let Write { method, path, .. } = w;
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 128 => Some(k.to_string()),
        Some(_) => return Err(ApiError::bad_request("Idempotency-Key", "1-128 visible ASCII characters")),
    };
    let fingerprint = idempotency::fingerprint(&method, &path, &body);
    let state2 = state.clone();
    let result = state
        .blocking(move |inner| {
            if let Some(key) = &key {
                if let Some(r) = idempotency::remembered(inner, key)? {
                    if r.fingerprint != fingerprint {
                        return Err(ApiError::unprocessable(
                            "idempotency_key_reused",
                            "this Idempotency-Key was used for a different request",
                        ));
                    }
                    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                    return Ok((r.status, body, true, None));
                }
            }
            let change = change(&body)?;
            let (status, reply, policy) = match policy_ops::apply(&inner.db, &change, &actor) {
                Ok((policy, applied)) => (200, json!(applied), Some(policy)),
                Err(e) if e.status < 500 => (e.status, e.body(), None),
                Err(e) => return Err(e),
            };
            if let Some(key) = &key {
                idempotency::remember(inner, key, &fingerprint, status, &reply)?;
            }
            Ok((status, reply, false, policy))
        })
        .await?;
    let (status, reply, replayed, policy) = result;
    if let Some(policy) = policy {
        tracing::info!("policy version {} stored ({method} {path})", policy.version);
        state2.publish(policy)?;
    }
    Ok(json_response(status, &reply, replayed))
}

pub(super) async fn put_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let w = Write::new(Method::PUT, "/v1/policy".into(), Role::Admin, "policy.replace");
    write(state, headers, w, body, |b| {
        let policy = Policy::from_json(b).map_err(ApiError::invalid_policy)?;
        Ok(Change::ReplacePolicy(Box::new(policy)))
    })
    .await
}

/// `PUT /v1/tiers/{tier}` replaces a tier whole; `PATCH` is a JSON merge patch on it
/// (`{"tokens_60s": 90000, "requests_10s": null}`).
pub(super) async fn set_tier(
    State(state): State<AppState>,
    Path(tier): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = method == Method::PATCH;
    let w = Write::new(method, format!("/v1/tiers/{tier}"), Role::Admin, if patch { "tier.patch" } else { "tier.put" });
    write(state, headers, w, body, move |b| match patch {
        true => Ok(Change::PatchTier(tier, patch_body(b)?)),
        false => {
            let limits = parse_body(b, &format!("tiers.{tier}"), Limits::from_json)?;
            Ok(Change::PutTier(tier, Box::new(limits)))
        }
    })
    .await
}

/// A JSON body for a merge patch: an object, or a clear 400.
fn patch_body(b: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::bad_request("", format!("not JSON: {e}")))
}

pub(super) async fn delete_tier(
    State(state): State<AppState>,
    Path(tier): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let w = Write::new(Method::DELETE, format!("/v1/tiers/{tier}"), Role::Admin, "tier.delete");
    write(state, headers, w, Bytes::new(), move |_| Ok(Change::DeleteTier(tier))).await
}

/// `PUT /v1/tenants/{t}` replaces the tenant's entry; `PATCH` is a JSON merge patch on it.
pub(super) async fn set_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let patch = method == Method::PATCH;
    let action = if patch { "tenant.patch" } else { "tenant.put" };
    let w = Write::new(method, format!("/v1/tenants/{tenant}"), Role::Admin, action).of_tenant(&tenant);
    write(state, headers, w, body, move |b| match patch {
        true => Ok(Change::PatchTenant(tenant, patch_body(b)?)),
        false => {
            let entry = parse_body(b, &format!("tenants.{tenant}"), TenantPolicy::from_json)?;
            Ok(Change::PutTenant(tenant, Box::new(entry)))
        }
    })
    .await
}

/// `DELETE /v1/tenants/{t}[?release_hold=true]`: with `release_hold`, an operator's hold goes
/// too (it outlives the entry otherwise).
pub(super) async fn delete_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let release_hold = match q.get("release_hold").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("release_hold", "true or false")),
    };
    // The query is part of what an Idempotency-Key stands for.
    let path = format!("/v1/tenants/{tenant}{}", if release_hold { "?release_hold=true" } else { "" });
    let w = Write::new(Method::DELETE, path, Role::Admin, "tenant.delete").of_tenant(&tenant);
    write(state, headers, w, Bytes::new(), move |_| Ok(Change::DeleteTenant { tenant, release_hold })).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerCommand {
    action: BreakerAction,
    #[serde(default)]
    reason: String,
    /// Hold a tenant control has never heard of (refused otherwise: a typo is not a tenant).
    #[serde(default)]
    create: bool,
}

pub(super) async fn post_breaker(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let w =
        Write::new(Method::POST, format!("/v1/tenants/{tenant}/breaker"), Role::Operator, "breaker").of_tenant(&tenant);
    write(state, headers, w, body, move |b| {
        let cmd: BreakerCommand = serde_json::from_slice(b).map_err(|e| {
            ApiError::bad_request(
                "",
                format!(
                    "expected {{\"action\": \"open\"|\"close\"|\"reset\", \"reason\": \"...\", \"create\": false}}: {e}"
                ),
            )
        })?;
        check_reason(&cmd.reason)?;
        Ok(Change::Breaker { tenant, action: cmd.action, reason: cmd.reason, create: cmd.create })
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUpCommand {
    budget: Budget,
    /// In the budget's unit: tokens, or the currency of the policy's `prices`.
    amount: f64,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    create: bool,
}

pub(super) async fn post_topup(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let w = Write::new(Method::POST, format!("/v1/tenants/{tenant}/topup"), Role::Operator, "budget.topup")
        .of_tenant(&tenant);
    write(state, headers, w, body, move |b| topup_change(b, tenant, None)).await
}

/// A top-up of a scope value's budget (`POST /v1/scopes/{scope}/{value}/topup`).
pub(super) async fn post_scope_topup(
    State(state): State<AppState>,
    Path((scope, value)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !fusebox_engine::policy::is_valid_scope_name(&scope) {
        return Err(ApiError::bad_request("scope", "a scope name: 1-32 of [a-z0-9_], starting with a letter"));
    }
    if !fusebox_engine::policy::is_valid_tenant_id(&value) {
        return Err(ApiError::bad_request("value", "scope values are 1-128 of [A-Za-z0-9-_.:@]"));
    }
    let w = Write::new(Method::POST, format!("/v1/scopes/{scope}/{value}/topup"), Role::Operator, "budget.topup");
    write(state, headers, w, body, move |b| topup_change(b, value, Some(scope))).await
}

/// An operator's reason, as the audit log keeps it.
fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.len() > 1024 {
        return Err(ApiError::bad_request("reason", "at most 1024 characters"));
    }
    Ok(())
}

fn topup_change(b: &[u8], tenant: String, scope: Option<String>) -> Result<Change, ApiError> {
    let cmd: TopUpCommand = serde_json::from_slice(b).map_err(|e| {
        ApiError::bad_request(
            "",
            format!(
                "expected {{\"budget\": \"budget_tokens_day\"|\"budget_cost_month\", \"amount\": N, \
                 \"reason\": \"...\", \"create\": false}}: {e}"
            ),
        )
    })?;
    check_reason(&cmd.reason)?;
    // The sum is checked again as the policy is validated; this names the request's own field.
    if !(cmd.amount > 0.0 && cmd.amount <= 1e12) {
        return Err(ApiError::bad_request("amount", "must be greater than 0 and at most 1e12"));
    }
    Ok(Change::TopUp { tenant, scope, budget: cmd.budget, amount: cmd.amount, reason: cmd.reason, create: cmd.create })
}
