//! `GET <status_path>`: a verified tenant reads its own breaker state and windows.

use super::identify;
use super::report;
use super::Worker;
use crate::active::ActivePolicy;
use crate::host;
use crate::store;
use fusebox_engine::admission;
use fusebox_engine::config::FilterConfig;
use fusebox_engine::reply::Reply;
use fusebox_engine::state::TenantState;
use proxy_wasm::types::Action;

/// Whether `path` (query string ignored) is the configured status endpoint.
pub fn is_status_request(config: &FilterConfig, path: &str) -> bool {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    config.status_path.as_deref().is_some_and(|s| s == bare)
}

pub fn serve(worker: &Worker, active: &ActivePolicy, headers: &host::Headers) -> Action {
    let now_ms = host::now_ms();
    let identity = match identify::identify(active, headers, now_ms) {
        Ok(id) => id,
        Err(reply) => {
            host::send_reply(&reply);
            return Action::Pause;
        }
    };
    let (tier, limits) = active.policy.limits_for(&identity.tenant, identity.tier.as_deref());
    let state: TenantState = store::read(&worker.keys.tenant(&identity.tenant)).unwrap_or_else(|e| {
        report::store_failed(worker, e);
        TenantState::default()
    });
    let snapshot = admission::snapshot(&state, &limits, now_ms);
    let body = serde_json::json!({
        "tenant": identity.tenant,
        "tier": tier,
        "policy_version": active.policy.version,
        "breaker": snapshot,
    });
    host::send_reply(&Reply {
        status: 200,
        headers: vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())],
        body: body.to_string(),
    });
    Action::Pause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(status_path: &str) -> FilterConfig {
        let policy = r#"{"identity": {"jwt": {"issuer": "i", "audiences": ["a"],
            "keys": [{"alg": "HS256", "secret": "a-secret-of-some-length"}]}}}"#;
        let json = format!(r#"{{"status_path": {status_path}, "policy": {policy}}}"#);
        FilterConfig::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn the_status_path_matches_with_or_without_a_query_and_nothing_below_it() {
        let c = config(r#""/fusebox/status""#);
        assert!(is_status_request(&c, "/fusebox/status"));
        assert!(is_status_request(&c, "/fusebox/status?verbose=1"));
        assert!(!is_status_request(&c, "/fusebox/status/x"));
        assert!(!is_status_request(&c, "/v1/chat/completions"));
    }

    #[test]
    fn no_path_is_the_status_endpoint_when_it_is_off() {
        assert!(!is_status_request(&config("null"), "/fusebox/status"));
    }
}
