//! `GET <status_path>`: a verified tenant reads its own breaker state and windows.

use super::identify;
use super::report;
use super::Worker;
use crate::active::ActivePolicy;
use crate::host;
use crate::states;
use fusebox_engine::admission;
use fusebox_engine::reply::Reply;
use fusebox_engine::state::TenantState;
use proxy_wasm::types::Action;

pub fn serve(worker: &Worker, active: &ActivePolicy, headers: &host::Headers) -> Action {
    let now_ms = host::now_ms();
    let identity = match identify::identify(active, &worker.config.credential_headers, headers, now_ms) {
        Ok(id) => id,
        Err(reply) => {
            host::send_reply(&reply);
            return Action::Pause;
        }
    };
    let (tier, limits) = active.policy.limits_for(&identity.tenant, identity.tier.as_deref());
    let state = match states::read(&worker.keys, &identity.tenant, None) {
        Ok(found) => found.map(|(_, s)| s).unwrap_or_default(),
        Err(e) => {
            report::store_failed(worker, e);
            TenantState::default()
        }
    };
    let snapshot = admission::snapshot(&state, &limits, now_ms);
    let body = serde_json::json!({
        "tenant": identity.tenant,
        "tier": tier,
        "policy_version": active.policy.version,
        "breaker": snapshot,
        // Limits judged without refusing (see docs/CONFIGURATION.md, "Shadow mode").
        "shadowed": limits.shadowed(),
    });
    host::send_reply(&Reply {
        status: 200,
        headers: vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())],
        body: body.to_string(),
    });
    Action::Pause
}
