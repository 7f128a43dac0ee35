//! The read endpoints: health, the policy (with `ETag`), tenants, usage, audit, the dashboard
//! and Prometheus metrics.

use super::auth::require_reader;
use super::state::AppState;
use crate::audit;
use crate::dashboard::{self, Page, Sort, MAX_PAGE};
use crate::db;
use crate::error::ApiError;
use crate::prometheus;
use crate::report::{self, UsageQuery};
use crate::series;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fusebox_engine::policy::is_valid_tenant_id;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(super) async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"ok": true, "policy_version": state.served().policy.version}))
}

/// `GET /v1/tenants/{t}/series?minutes=N` (default 60, at most a day).
pub(super) async fn get_series(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    valid_tenant(&tenant)?;
    let minutes = match q.get("minutes").filter(|v| !v.is_empty()) {
        None => 60,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=series::MAX_MINUTES).contains(&n) => n,
            _ => return Err(ApiError::bad_request("minutes", format!("1-{}", series::MAX_MINUTES))),
        },
    };
    let policy = state.served().policy;
    state
        .blocking(move |inner| series::series(&inner.db.conn(), &policy, &tenant, db::now_ms(), minutes))
        .await
        .map(Json)
}

/// `GET /v1/whoami`: the verified caller (`401` for an unknown token).
pub(super) async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    Ok(Json(require_reader(&state.0.config, &headers)?.describe()))
}

/// The longest a `GET /v1/policy?wait=S` is held.
pub(super) const MAX_WAIT_S: u64 = 60;

/// `GET /v1/policy`, with `ETag`/`If-None-Match`. With `?wait=S` and an `If-None-Match` that is
/// current, the answer waits until the policy changes (then 200 with it) or `S` seconds pass
/// (then 304): a long poll, so a change reaches every Envoy as soon as it is made.
pub(super) async fn get_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let wait_s = match q.get("wait") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| ApiError::bad_request("wait", "seconds, 0-60"))?.min(MAX_WAIT_S),
    };
    let matches = |served: &super::state::Served| {
        headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == served.etag || t.trim() == "*"))
    };
    let mut served = state.served();
    if wait_s > 0 && matches(&served) {
        state.changed_from(served.policy.version, std::time::Duration::from_secs(wait_s)).await;
        served = state.served();
    }
    let etag = HeaderValue::from_str(&served.etag).map_err(|e| ApiError::internal(e.to_string()))?;
    if matches(&served) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        served.body,
    )
        .into_response())
}

pub(super) fn valid_tenant(tenant: &str) -> Result<(), ApiError> {
    if is_valid_tenant_id(tenant) {
        Ok(())
    } else {
        Err(ApiError::bad_request("tenant", "tenant ids are 1-128 of [A-Za-z0-9-_.:@]"))
    }
}

pub(super) async fn get_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    valid_tenant(&tenant)?;
    let policy = state.served().policy;
    state
        .blocking(move |inner| {
            report::tenant(&inner.db.conn(), &policy, &tenant, db::now_ms(), inner.config.escalation)
        })
        .await
        .map(Json)
}

/// The operator page; it reads `/v1/dashboard` with the token the operator enters.
pub(super) async fn dashboard_page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        crate::dashboard::PAGE,
    )
        .into_response()
}

/// `GET /v1/dashboard?offset=&limit=&q=&sort=attention|tokens|tenant`.
pub(super) async fn get_dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let number = |name: &str, default: usize, max: usize| match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::bad_request(name, format!("a whole number, 0-{max}"))),
        },
    };
    let defaults = Page::default();
    let sort = match q.get("sort").filter(|v| !v.is_empty()) {
        None => defaults.sort,
        Some(s) => Sort::parse(s).ok_or_else(|| ApiError::bad_request("sort", "attention, tokens or tenant"))?,
    };
    let search = q.get("q").filter(|v| !v.is_empty()).cloned();
    if search.as_ref().is_some_and(|s| s.len() > 128) {
        return Err(ApiError::bad_request("q", "at most 128 characters"));
    }
    let page = Page {
        offset: number("offset", 0, usize::MAX)?,
        limit: number("limit", defaults.limit, MAX_PAGE)?,
        search,
        sort,
    };
    let policy = state.served().policy;
    state
        .blocking(move |inner| dashboard::view(&inner.db.conn(), &policy, db::now_ms(), inner.config.escalation, &page))
        .await
        .map(Json)
}

pub(super) async fn list_tenants(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let policy = state.served().policy;
    state.blocking(move |inner| report::tenants(&inner.db.conn(), &policy)).await.map(Json)
}

pub(super) async fn get_usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let time = |name: &str, default: u64| match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => crate::timefmt::parse(v).map_err(|e| ApiError::bad_request(name, e)),
    };
    let query = UsageQuery {
        tenant: q.get("tenant").filter(|t| !t.is_empty()).cloned(),
        model: q.get("model").filter(|m| !m.is_empty()).cloned(),
        from_s: time("from", 0)?,
        to_s: time("to", db::now_ms() / 1000 + 60)?,
    };
    if let Some(t) = &query.tenant {
        valid_tenant(t)?;
    }
    if query.to_s < query.from_s {
        return Err(ApiError::bad_request("to", "must not be before 'from'"));
    }
    // `scope=org` groups by the scope's values instead of by tenant.
    let scope = q.get("scope").filter(|s| !s.is_empty()).cloned();
    if let Some(s) = &scope {
        if !fusebox_engine::policy::is_valid_scope_name(s) {
            return Err(ApiError::bad_request("scope", "a scope name: 1-32 of [a-z0-9_], starting with a letter"));
        }
        if query.tenant.is_some() {
            return Err(ApiError::bad_request("tenant", "a scope spans tenants: ask for one or the other"));
        }
    }
    state
        .blocking(move |inner| match &scope {
            Some(s) => report::scope_usage(&inner.db.conn(), s, &query),
            None => report::usage(&inner.db.conn(), &query),
        })
        .await
        .map(Json)
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    tenant: Option<String>,
    limit: Option<u64>,
}

pub(super) async fn get_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    state
        .blocking(move |inner| {
            let entries = audit::list(&inner.db.conn(), q.tenant.as_deref(), limit)?;
            Ok(json!({ "entries": entries }))
        })
        .await
        .map(Json)
}

pub(super) async fn get_audit_verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let v = state.blocking(|inner| Ok(audit::verify(&inner.db.conn())?)).await?;
    if !v.ok {
        tracing::error!("audit log verification failed: {:?}", v.error);
    }
    // A broken chain is an answer, not a server error: 200 with ok=false.
    Ok(Json(v).into_response())
}

pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let policy = state.served().policy;
    let text = state
        .blocking(move |inner| {
            let max = match inner.config.metrics_max_tenants {
                0 => prometheus::DEFAULT_METRICS_MAX_TENANTS,
                n => n,
            };
            prometheus::metrics(&inner.db.conn(), &policy, db::now_ms(), inner.config.escalation, max)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
