//! The routes of the control API (docs/CONFIGURATION.md, "fusebox-control").

use super::events::post_events;
use super::fleet::post_fleet_sync;
use super::reads::{
    dashboard_page, get_audit, get_audit_verify, get_dashboard, get_policy, get_series, get_tenant, get_usage, healthz,
    list_tenants, metrics, whoami,
};
use super::state::AppState;
use super::writes::{
    delete_tenant, delete_tier, post_breaker, post_scope_topup, post_topup, put_policy, set_tenant, set_tier,
};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/whoami", get(whoami))
        .route("/v1/policy", get(get_policy).put(put_policy))
        .route("/v1/tiers/{tier}", put(set_tier).patch(set_tier).delete(delete_tier))
        .route("/v1/tenants", get(list_tenants))
        .route("/v1/tenants/{tenant}", get(get_tenant).put(set_tenant).patch(set_tenant).delete(delete_tenant))
        .route("/v1/tenants/{tenant}/breaker", post(post_breaker))
        .route("/v1/tenants/{tenant}/topup", post(post_topup))
        .route("/v1/scopes/{scope}/{value}/topup", post(post_scope_topup))
        .route("/v1/tenants/{tenant}/series", get(get_series))
        .route("/v1/events", post(post_events))
        // An Envoy with many active tenants sends them all at once (at most MAX_KEYS).
        .route("/v1/fleet/sync", post(post_fleet_sync).layer(DefaultBodyLimit::max(64 << 20)))
        .route("/v1/usage", get(get_usage))
        .route("/v1/audit", get(get_audit))
        .route("/v1/audit/verify", get(get_audit_verify))
        .route("/dashboard", get(dashboard_page))
        .route("/v1/dashboard", get(get_dashboard))
        .layer(DefaultBodyLimit::max(8 << 20))
        .with_state(state)
}
