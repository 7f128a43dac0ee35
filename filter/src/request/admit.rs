//! Admission of an identified request: the tenant's (or its route tier's) state first, then its
//! agent run; a refusal is counted, reported and sent, an admission becomes a [`Counting`].

use super::identify::RunHeaders;
use super::lifecycle::Counting;
use super::report;
use super::scopes;
use super::Worker;
use crate::active::ActivePolicy;
use crate::claims::Table;
use crate::host;
use crate::metrics::Counter;
use crate::runs::{self, AdmittedRun, RunRefusal};
use crate::states::{self, Hold, Missing, StateAt};
use crate::store::StoreError;
use fusebox_engine::admission::{self, Admitted, Allowed, Decision};
use fusebox_engine::api_shape;
use fusebox_engine::config::{Mode, RouteMatch};
use fusebox_engine::event::Event;
use fusebox_engine::identity::Identity;
use fusebox_engine::policy::{Limit, Limits};
use fusebox_engine::reply::{self, StreamApi};
use fusebox_engine::telemetry;

/// A request as it arrives at admission.
pub struct Arrival<'a> {
    pub identity: Identity,
    pub route: RouteMatch<'a>,
    pub run: Option<RunHeaders>,
    pub now_ms: u64,
    /// The prompt's size in tokens, from `content-length` (reserved with the output allowance).
    pub prompt: u64,
    pub api: StreamApi,
}

/// Whose limits judge a request, and the name of the state it is counted in.
struct Judged {
    tier: String,
    /// What admission enforces.
    limits: Limits,
    /// What it only shadows (see `fusebox_engine::policy::Limit`), when anything is.
    shadow: Option<Box<Limits>>,
    name: String,
    /// The route tier, when the route has one of its own.
    scope: Option<String>,
}

/// A route with a tier of its own is judged by that tier, in a state of its own; any other
/// request by the tenant's limits.
/// Without fleet counts (the singleton fell back), each Envoy enforces its share of the limits.
fn judged(worker: &Worker, active: &ActivePolicy, identity: &Identity, route: &RouteMatch<'_>) -> Judged {
    let tenant = &identity.tenant;
    let (tier, limits, name, scope) = match route.tier.and_then(|t| Some((t, active.policy.route_limits(tenant, t)?))) {
        Some((t, limits)) => (t.to_string(), limits, states::route_name(tenant, t), Some(t.to_string())),
        None => {
            let (tier, limits) = active.policy.limits_for(tenant, identity.tier.as_deref());
            (tier, limits, tenant.to_string(), None)
        }
    };
    let (limits, shadow) = scopes::as_judged(worker, limits);
    Judged { tier, limits, shadow, name, scope }
}

/// Admits a request, or refuses it (the reply is sent) and returns `None`.
pub fn admit(worker: &Worker, active: &ActivePolicy, a: Arrival<'_>) -> Option<Counting> {
    let enforce = a.route.mode == Mode::Enforce;
    let j = judged(worker, active, &a.identity, &a.route);
    worker.fleet_keys.touch(&j.name, a.now_ms);
    let tenant = a.identity.tenant;
    // For access logs (`%FILTER_STATE(wasm.fusebox_tenant:PLAIN)%` and kin), allowed or not.
    host::set_filter_state("fusebox_tenant", &tenant);
    host::set_filter_state("fusebox_tier", &j.tier);
    if let Some(r) = &a.run {
        host::set_filter_state("fusebox_run_id", &r.run_id);
    }
    if worker.config.gen_ai_telemetry {
        host::set_filter_state(telemetry::PROVIDER.filter_state, telemetry::provider_name(a.api));
        host::set_filter_state(telemetry::OPERATION.filter_state, telemetry::OPERATION_NAME);
    }
    // The output allowance is what this tenant's responses have used, read in the same update.
    // Shadowed limits are judged first, read-only, on the state before this request is counted.
    let admitted = states::update(&worker.keys, &j.name, None, Missing::Claim, Hold::Judge(&j.limits), a.now_ms, |s| {
        let shadowed = j.shadow.as_deref().and_then(|sh| admission::shadow_refusal(s, sh, a.now_ms));
        let allowance = admission::output_allowance(s, &j.limits);
        let (decision, transitions) = admission::admit(s, &j.limits, a.now_ms, a.prompt.saturating_add(allowance));
        (decision, transitions, admission::quotas(s, &j.limits, a.now_ms), allowance, shadowed)
    });
    let mut shadowed = None;
    let mut allowance = 0;
    // Where the state was found (or added): the bucket later updates go to.
    let mut state = StateAt { name: j.name.clone(), key: String::new() };
    let (allowed, quotas) = match admitted {
        Ok(Some(states::Updated { result: (decision, transitions, quotas, learned, shadow), info, key, claimed })) => {
            state.key = key;
            shadowed = shadow;
            if let Some(bucket) = claimed {
                worker.claims.claimed(Table::States, bucket);
            }
            allowance = learned;
            report::update(worker, info, &transitions, &tenant, j.scope.as_deref());
            match decision {
                Decision::Allow(allowed) => (Some(allowed), quotas),
                Decision::Deny(denied) if enforce => {
                    worker.metrics.inc(Counter::for_denial(denied.cause));
                    let run_id = a.run.as_ref().map(|r| r.run_id.as_str());
                    refuse(
                        worker,
                        &tenant,
                        api_shape::for_api(reply::denial(&tenant, &denied, run_id), a.api),
                        a.now_ms,
                    );
                    return None;
                }
                Decision::Deny(_) => {
                    worker.metrics.inc(Counter::WouldDeny);
                    (None, quotas)
                }
            }
        }
        Err(StoreError::Full) if enforce => {
            worker.metrics.inc(Counter::StateFull);
            log::warn!(
                "no room for the state of '{}': refused (its bucket holds {} states that still matter)",
                j.name,
                fusebox_engine::state::entry::PER_BUCKET
            );
            refuse(worker, &tenant, api_shape::for_api(reply::state_full(&tenant), a.api), a.now_ms);
            return None;
        }
        Ok(None) => (None, Vec::new()),
        Err(e) => {
            // Our bookkeeping failing must not take the tenant's traffic down.
            report::store_failed(worker, e);
            (None, Vec::new())
        }
    };
    let admitted = Admitted::new(tenant, j.scope, a.route.label, j.limits, allowed, a.prompt, allowance);
    let reserve = a.prompt.saturating_add(allowance);
    let memberships = &a.identity.scopes;
    let in_scopes = match scopes::admit(worker, active, &admitted.tenant, memberships, enforce, reserve, a.now_ms) {
        Ok(s) => s,
        Err(refused) => {
            give_back(worker, &state, &admitted, &[], a.now_ms);
            worker.metrics.inc(Counter::for_denial(refused.denied.cause));
            let run_id = a.run.as_ref().map(|r| r.run_id.as_str());
            let reply = reply::denial_in(&admitted.tenant, Some(&refused.label), &refused.denied, run_id);
            refuse(worker, &admitted.tenant, api_shape::for_api(reply, a.api), a.now_ms);
            return None;
        }
    };
    let run = match a.run {
        None => None,
        Some(r) => {
            let taken = Taken { state: &state, admitted: &admitted, scopes: &in_scopes.held };
            admit_run(worker, taken, j.shadow.as_deref(), &r, enforce, a.now_ms, a.api)?
        }
    };
    // The tenant's own shadowed limits first, then its scopes', then its run's.
    let shadowed = shadowed.or(in_scopes.shadowed).or_else(|| run.as_ref().and_then(|r| r.shadowed));
    if let Some(limit) = shadowed {
        shadow_refused(worker, &admitted.tenant, limit, a.now_ms);
    }
    worker.metrics.inc(Counter::RequestsAllowed);
    if let Some(w) = allowed.and_then(|a: Allowed| a.warning) {
        worker.reporter.push(Event::warning(&admitted.tenant, w, a.now_ms), a.now_ms);
    }
    host::set_request_header("x-fusebox-tenant", Some(&admitted.tenant));
    let mut counting = Counting::new(admitted, state, run, a.api);
    counting.warning = allowed.and_then(|a| a.warning).map(|w| w.to_string());
    counting.shadow_denied = shadowed.map(Limit::reason);
    counting.scopes = in_scopes.held;
    counting.memberships = a.identity.scopes;
    counting.quota_fields = reply::quota_fields(&quotas);
    Some(counting)
}

/// What admission took for a request so far: its tenant's slot, and its scopes'.
#[derive(Clone, Copy)]
struct Taken<'a> {
    state: &'a StateAt,
    admitted: &'a Admitted,
    scopes: &'a [scopes::Held],
}

/// Gives back what the tenant's state (and `held` scopes) took for a request refused later.
pub(super) fn give_back(worker: &Worker, state: &StateAt, admitted: &Admitted, held: &[scopes::Held], now_ms: u64) {
    let limits = &admitted.limits;
    if let Err(e) =
        state.update(&worker.keys, limits, now_ms, |s| admission::settle(s, limits, admitted.release(), now_ms))
    {
        report::store_failed(worker, e);
    }
    scopes::release(worker, &admitted.tenant, held, now_ms);
}

/// Admits the request's agent run step. `Ok(None)`: the request goes on without a run (observe
/// mode, or the run's records could not be read); `None`: refused, and what the tenant's (and
/// its scopes') admission took is given back.
fn admit_run(
    worker: &Worker,
    taken: Taken<'_>,
    shadow: Option<&Limits>,
    r: &RunHeaders,
    enforce: bool,
    now_ms: u64,
    api: StreamApi,
) -> Option<Option<AdmittedRun>> {
    let tenant = &taken.admitted.tenant;
    let limits = &taken.admitted.limits;
    let on_claim = |bucket| worker.claims.claimed(Table::Runs, bucket);
    match runs::admit(&worker.keys, tenant, &r.run_id, r.parent.as_deref(), (limits, shadow), now_ms, on_claim) {
        Ok(run) => {
            worker.fleet_keys.touch(&run.root, now_ms); // its name in the fleet
            Some(Some(run))
        }
        Err(RunRefusal::Denied(denied)) if enforce => {
            give_back(worker, taken.state, taken.admitted, taken.scopes, now_ms);
            worker.metrics.inc(Counter::denied_run(denied.limit));
            let reply = reply::run_denial(tenant, &r.run_id, &denied, limits.run_ttl_s);
            refuse(worker, tenant, api_shape::for_api(reply, api), now_ms);
            None
        }
        Err(RunRefusal::Denied(_)) => {
            worker.metrics.inc(Counter::WouldDeny);
            Some(None)
        }
        Err(RunRefusal::Store(e)) => {
            report::store_failed(worker, e);
            Some(None)
        }
    }
}

/// Reports a request a shadowed limit would have refused: it passes, and the reason is counted
/// (`fusebox.requests.shadow_denied.<reason>`), sent to control and left for access logs.
pub(super) fn shadow_refused(worker: &Worker, tenant: &str, limit: Limit, now_ms: u64) {
    worker.metrics.inc(Counter::shadow_denied(limit));
    host::set_filter_state("fusebox_shadow_reason", limit.reason());
    worker.reporter.push(Event::shadow_denial(tenant, limit.reason(), now_ms), now_ms);
    log::debug!("tenant '{tenant}': shadowed limit {} would have refused this request", limit.reason());
}

/// Reports a refusal (by its `x-fusebox-reason`) and sends it.
pub(super) fn refuse(worker: &Worker, tenant: &str, reply: reply::Reply, now_ms: u64) {
    let reason = reply.header("x-fusebox-reason").unwrap_or("denied");
    worker.reporter.push(Event::denial(tenant, reason, now_ms), now_ms);
    host::send_reply(&reply);
}
