//! A request's scopes beside its tenant (org, team, user, ...): each limited scope value has a
//! state of its own (`*org:initech`), admitted like the tenant's and settled with the same
//! usage. Scopes only metered (no limit) have no state and cost nothing here.

use super::report;
use super::Worker;
use crate::active::ActivePolicy;
use crate::claims::Table;
use crate::metrics::Counter;
use crate::states::{self, Hold, Missing, StateAt};
use fusebox_engine::admission::{self, Decision, Denied, InFlight, Settlement};
use fusebox_engine::breaker::ProbeEnd;
use fusebox_engine::fleet;
use fusebox_engine::identity::Membership;
use fusebox_engine::policy::{scope_label, scope_state_name, Limit, Limits};

/// A scope value's state that admitted a request and holds its slot until it settles.
#[derive(Debug, Clone)]
pub struct Held {
    /// `org:initech`.
    pub label: String,
    pub state: StateAt,
    pub limits: Limits,
    pub in_flight: InFlight,
}

impl Held {
    /// This scope's share of the request's settlement: the same usage, its own slot and probe.
    fn settlement(&self, of_request: &Settlement, end: ProbeEnd) -> Settlement {
        Settlement {
            release: true,
            reserved: self.in_flight.reserved,
            probe: self.in_flight.probe.then_some(end),
            // The tenant's output estimate is the tenant's own.
            output_tokens: None,
            ..*of_request
        }
    }
}

/// `limits` as this Envoy judges them: what it enforces and what it only shadows, each at its
/// share of the fleet while fleet counts are unavailable.
pub fn as_judged(worker: &Worker, limits: Limits) -> (Limits, Option<Box<Limits>>) {
    let (limits, shadow) = limits.split_shadow();
    match worker.fleet_share.get() {
        share if share > 1 => {
            (fleet::local_share(&limits, share), shadow.map(|s| Box::new(fleet::local_share(&s, share))))
        }
        _ => (limits, shadow),
    }
}

/// What the scopes said of a request.
#[derive(Debug, Default)]
pub struct Admitted {
    pub held: Vec<Held>,
    /// The first shadowed limit of a scope that would have refused it.
    pub shadowed: Option<Limit>,
}

/// A scope's refusal: its label and why.
pub struct Refused {
    pub label: String,
    pub denied: Denied,
}

/// Admits a request of `tenant` in each limited scope of its `memberships`, reserving `reserve`
/// tokens in each. A refusal (when `enforce`) gives back what the scopes before it took.
pub fn admit(
    worker: &Worker,
    active: &ActivePolicy,
    tenant: &str,
    memberships: &[Membership],
    enforce: bool,
    reserve: u64,
    now_ms: u64,
) -> Result<Admitted, Refused> {
    let mut out = Admitted::default();
    for m in memberships {
        let Some(limits) = active.policy.scope_limits(&m.scope, &m.value) else { continue };
        let (limits, shadow) = as_judged(worker, limits);
        let label = scope_label(&m.scope, &m.value);
        let name = scope_state_name(&m.scope, &m.value);
        worker.fleet_keys.touch(&name, now_ms);
        let updated = states::update(&worker.keys, &name, None, Missing::Claim, Hold::Judge(&limits), now_ms, |s| {
            let shadowed = shadow.as_deref().and_then(|sh| admission::shadow_refusal(s, sh, now_ms));
            let (decision, transitions) = admission::admit(s, &limits, now_ms, reserve);
            (decision, transitions, shadowed)
        });
        match updated {
            Ok(Some(states::Updated { result: (decision, transitions, shadowed), info, key, claimed })) => {
                if let Some(slot) = claimed {
                    worker.claims.claimed(Table::States, slot);
                }
                report::update(worker, info, &transitions, tenant, Some(&label));
                match decision {
                    Decision::Allow(a) => {
                        out.shadowed = out.shadowed.or(shadowed);
                        let in_flight = InFlight { probe: a.probe, reserved: reserve };
                        out.held.push(Held { label, state: StateAt { name, key }, limits, in_flight });
                    }
                    Decision::Deny(denied) if enforce => {
                        release(worker, tenant, &out.held, now_ms);
                        return Err(Refused { label, denied });
                    }
                    Decision::Deny(_) => worker.metrics.inc(Counter::WouldDeny),
                }
            }
            Ok(None) => {}
            // A full table or a failing store must not take the tenant's traffic down: the
            // scope goes uncounted for this request (counted and logged).
            Err(e) => report::store_failed(worker, e),
        }
    }
    Ok(out)
}

/// Gives back what `held` took for a request of `tenant` that goes no further.
pub fn release(worker: &Worker, tenant: &str, held: &[Held], now_ms: u64) {
    let nothing = Settlement::default();
    settle(worker, tenant, held, &nothing, ProbeEnd::Abandoned, now_ms);
}

/// Settles a finished request of `tenant` in each scope that admitted it.
pub fn settle(worker: &Worker, tenant: &str, held: &[Held], of_request: &Settlement, end: ProbeEnd, now_ms: u64) {
    for h in held {
        let s = h.settlement(of_request, end);
        match h.state.update(&worker.keys, &h.limits, now_ms, |st| admission::settle(st, &h.limits, s, now_ms)) {
            Ok(Some(u)) => report::update(worker, u.info, &u.result, tenant, Some(&h.label)),
            Ok(None) => log::debug!("the state of scope {} went before its request settled", h.label),
            Err(e) => report::store_failed(worker, e),
        }
    }
}
