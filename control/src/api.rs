//! The HTTP API (DESIGN.md, "Control service API"). Handlers are thin: authorization,
//! parsing, then the blocking database work on tokio's blocking pool.

use crate::audit;
use crate::db::{self, Db};
use crate::error::ApiError;
use crate::ingest::{self, Escalation, RawBatch};
use crate::policy_ops::{self, BreakerAction, Change};
use crate::report::{self, UsageQuery};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fusebox_engine::identity::{hex, sha256};
use fusebox_engine::policy::{is_valid_tenant_id, Limits, Policy, PolicyError, TenantPolicy};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How the service is run (from the command line).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Required for every write; without it the admin API is disabled.
    pub admin_token: Option<String>,
    /// For the filter: read the policy and post events (the admin token works too).
    pub filter_token: Option<String>,
    pub escalation: Escalation,
    pub metrics_max_tenants: usize,
}

/// The policy as served to filters, kept in memory and replaced on every change.
#[derive(Debug, Clone)]
struct Served {
    policy: Arc<Policy>,
    body: Bytes,
    etag: String,
}

impl Served {
    fn new(policy: Policy) -> Result<Served, ApiError> {
        let body =
            fusebox_engine::policy::to_json(&policy).ok_or_else(|| ApiError::internal("cannot encode policy"))?;
        Ok(Served { etag: format!("\"v{}\"", policy.version), policy: Arc::new(policy), body: Bytes::from(body) })
    }
}

pub struct Inner {
    pub db: Db,
    served: RwLock<Served>,
    config: Config,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Opens the service over `db`, seeding it with `seed` if it holds no policy yet.
    pub fn new(db: Db, seed: Option<(Policy, String)>, config: Config) -> Result<AppState, String> {
        let stored = policy_ops::current(&db.conn()).map_err(|e| e.to_string())?;
        let policy = match (stored, seed) {
            (Some(p), seed) => {
                if let Some((_, source)) = seed {
                    tracing::info!("database already holds policy version {}; not importing {source}", p.version);
                }
                p
            }
            (None, Some((p, source))) => {
                let p = policy_ops::seed(&db, p, "fusebox-control", &source).map_err(|e| e.to_string())?;
                tracing::info!("database seeded with policy from {source} (version 1)");
                p
            }
            (None, None) => return Err("the database holds no policy: pass --policy FILE to seed it".into()),
        };
        let served = Served::new(policy).map_err(|e| e.to_string())?;
        Ok(AppState(Arc::new(Inner { db, served: RwLock::new(served), config })))
    }

    fn served(&self) -> Served {
        self.0.served.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, policy: Policy) -> Result<(), ApiError> {
        let served = Served::new(policy)?;
        *self.0.served.write().unwrap_or_else(|p| p.into_inner()) = served;
        Ok(())
    }

    /// Runs blocking database work off the async threads.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| ApiError::internal(e.to_string()))?
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/policy", get(get_policy).put(put_policy))
        .route("/v1/tiers/{tier}", put(put_tier).delete(delete_tier))
        .route("/v1/tenants", get(list_tenants))
        .route("/v1/tenants/{tenant}", get(get_tenant).put(put_tenant).delete(delete_tenant))
        .route("/v1/tenants/{tenant}/breaker", post(post_breaker))
        .route("/v1/events", post(post_events))
        .route("/v1/usage", get(get_usage))
        .route("/v1/audit", get(get_audit))
        .route("/v1/audit/verify", get(get_audit_verify))
        .route("/dashboard", get(dashboard_page))
        .route("/v1/dashboard", get(get_dashboard))
        .layer(DefaultBodyLimit::max(8 << 20))
        .with_state(state)
}

// ---- authorization ----

fn digest_eq(a: &str, b: &str) -> bool {
    // Comparing digests keeps the comparison time independent of where the tokens differ.
    let (a, b) = (sha256(a.as_bytes()), sha256(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

fn require_admin(cfg: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
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
fn require_reader(cfg: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
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
fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-fusebox-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| "admin".to_string(), |a| format!("admin:{a}"))
}

// ---- reads ----

async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"ok": true, "policy_version": state.served().policy.version}))
}

async fn get_policy(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let served = state.served();
    let etag = HeaderValue::from_str(&served.etag).map_err(|e| ApiError::internal(e.to_string()))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == served.etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        served.body,
    )
        .into_response())
}

fn valid_tenant(tenant: &str) -> Result<(), ApiError> {
    if is_valid_tenant_id(tenant) {
        Ok(())
    } else {
        Err(ApiError::bad_request("tenant", "tenant ids are 1-128 of [A-Za-z0-9-_.:@]"))
    }
}

async fn get_tenant(
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
async fn dashboard_page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        crate::dashboard::PAGE,
    )
        .into_response()
}

async fn get_dashboard(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let policy = state.served().policy;
    state
        .blocking(move |inner| crate::dashboard::view(&inner.db.conn(), &policy, db::now_ms(), inner.config.escalation))
        .await
        .map(Json)
}

async fn list_tenants(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let policy = state.served().policy;
    state.blocking(move |inner| report::tenants(&inner.db.conn(), &policy)).await.map(Json)
}

async fn get_usage(
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
    state.blocking(move |inner| report::usage(&inner.db.conn(), &query)).await.map(Json)
}

#[derive(Deserialize)]
struct AuditQuery {
    tenant: Option<String>,
    limit: Option<u64>,
}

async fn get_audit(
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

async fn get_audit_verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let v = state.blocking(|inner| Ok(audit::verify(&inner.db.conn())?)).await?;
    if !v.ok {
        tracing::error!("audit log verification failed: {:?}", v.error);
    }
    // A broken chain is an answer, not a server error: 200 with ok=false.
    Ok(Json(v).into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let policy = state.served().policy;
    let text = state
        .blocking(move |inner| {
            let max = match inner.config.metrics_max_tenants {
                0 => report::DEFAULT_METRICS_MAX_TENANTS,
                n => n,
            };
            report::metrics(&inner.db.conn(), &policy, db::now_ms(), inner.config.escalation, max)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

// ---- writes ----

/// Parses a JSON body strictly, prefixing the failing field with `at`.
fn parse_body<T>(body: &[u8], at: &str, parse: impl Fn(&[u8]) -> Result<T, PolicyError>) -> Result<T, ApiError> {
    parse(body).map_err(|e| {
        let field = match (at.is_empty(), e.field.is_empty()) {
            (true, _) => e.field,
            (false, true) => at.to_string(),
            (false, false) => format!("{at}.{}", e.field),
        };
        ApiError::invalid_policy(PolicyError { field, message: e.message })
    })
}

/// A stored reply to an `Idempotency-Key`d write.
struct Remembered {
    fingerprint: String,
    status: u16,
    body: String,
}

fn remembered(inner: &Inner, key: &str) -> Result<Option<Remembered>, ApiError> {
    Ok(inner
        .db
        .conn()
        .query_row("SELECT fingerprint, status, body FROM idempotency WHERE key = ?1", [key], |r| {
            Ok(Remembered { fingerprint: r.get(0)?, status: r.get(1)?, body: r.get(2)? })
        })
        .optional()?)
}

fn json_response(status: u16, body: &Value, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(body)).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Runs an admin write: authorization, `Idempotency-Key`, the change, the new policy served.
async fn write(
    state: AppState,
    headers: HeaderMap,
    method: Method,
    path: String,
    body: Bytes,
    change: impl FnOnce(&[u8]) -> Result<Change, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    require_admin(&state.0.config, &headers)?;
    let actor = actor(&headers);
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 128 => Some(k.to_string()),
        Some(_) => return Err(ApiError::bad_request("Idempotency-Key", "1-128 visible ASCII characters")),
    };
    let fingerprint = {
        let mut material = format!("{method} {path}\n").into_bytes();
        material.extend_from_slice(&body);
        hex(&sha256(&material))
    };
    let state2 = state.clone();
    let result = state
        .blocking(move |inner| {
            if let Some(key) = &key {
                if let Some(r) = remembered(inner, key)? {
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
                inner.db.conn().execute(
                    "INSERT OR IGNORE INTO idempotency (key, fingerprint, status, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key, fingerprint, status, reply.to_string(), db::to_sql(db::now_ms())],
                )?;
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

async fn put_policy(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    write(state, headers, Method::PUT, "/v1/policy".into(), body, |b| {
        let policy = Policy::from_json(b).map_err(ApiError::invalid_policy)?;
        Ok(Change::ReplacePolicy(Box::new(policy)))
    })
    .await
}

async fn put_tier(
    State(state): State<AppState>,
    Path(tier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = format!("/v1/tiers/{tier}");
    write(state, headers, Method::PUT, path, body, move |b| {
        let limits = parse_body(b, &format!("tiers.{tier}"), Limits::from_json)?;
        Ok(Change::PutTier(tier, Box::new(limits)))
    })
    .await
}

async fn delete_tier(
    State(state): State<AppState>,
    Path(tier): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = format!("/v1/tiers/{tier}");
    write(state, headers, Method::DELETE, path, Bytes::new(), move |_| Ok(Change::DeleteTier(tier))).await
}

async fn put_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let path = format!("/v1/tenants/{tenant}");
    write(state, headers, Method::PUT, path, body, move |b| {
        let entry = parse_body(b, &format!("tenants.{tenant}"), TenantPolicy::from_json)?;
        Ok(Change::PutTenant(tenant, Box::new(entry)))
    })
    .await
}

async fn delete_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let path = format!("/v1/tenants/{tenant}");
    write(state, headers, Method::DELETE, path, Bytes::new(), move |_| Ok(Change::DeleteTenant(tenant))).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerCommand {
    action: BreakerAction,
    #[serde(default)]
    reason: String,
}

async fn post_breaker(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    valid_tenant(&tenant)?;
    let path = format!("/v1/tenants/{tenant}/breaker");
    write(state, headers, Method::POST, path, body, move |b| {
        let cmd: BreakerCommand = serde_json::from_slice(b).map_err(|e| {
            ApiError::bad_request(
                "",
                format!("expected {{\"action\": \"open\"|\"close\"|\"reset\", \"reason\": \"...\"}}: {e}"),
            )
        })?;
        if cmd.reason.len() > 1024 {
            return Err(ApiError::bad_request("reason", "at most 1024 characters"));
        }
        Ok(Change::Breaker { tenant, action: cmd.action, reason: cmd.reason })
    })
    .await
}

async fn post_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    require_reader(&state.0.config, &headers)?;
    let batch: RawBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("", format!("expected an event batch {{batch_id, source, events}}: {e}")))?;
    let policy = state.served().policy;
    let out = state.blocking(move |inner| ingest::ingest(&inner.db, &policy, batch, inner.config.escalation)).await?;
    Ok(Json(out).into_response())
}
