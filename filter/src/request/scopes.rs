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
        let judged = Judged { tenant, label, name, limits, shadow: shadow.as_deref() };
        match admit_one(worker, judged, reserve, now_ms) {
            Ok(Some(entered)) => {
                out.shadowed = out.shadowed.or(entered.shadowed);
                out.held.push(entered.held);
            }
            Ok(None) => {}
            Err(refused) if enforce => {
                release(worker, tenant, &out.held, now_ms);
                return Err(refused);
            }
            Err(_) => worker.metrics.inc(Counter::WouldDeny),
        }
    }
    Ok(out)
}

/// A state to admit a request in, beside its tenant's: a scope value's or a model pattern's.
pub struct Judged<'a> {
    pub tenant: &'a str,
    /// How a refusal names it: `org:initech`, `model:gpt-4o*`.
    pub label: String,
    /// Its name in the state table.
    pub name: String,
    pub limits: Limits,
    pub shadow: Option<&'a Limits>,
}

/// A request admitted in a state beside its tenant's.
pub struct Entered {
    pub held: Held,
    /// The shadowed limit that would have refused it, if one did.
    pub shadowed: Option<Limit>,
}

/// Admits a request in `j`'s state, reserving `reserve` tokens. `Ok(Some)`: admitted (held
/// until it settles), with the shadowed limit that would have refused it; `Ok(None)`: the state
/// could not be updated (logged, counted: bookkeeping must not take traffic down); `Err`: refused.
pub fn admit_one(worker: &Worker, j: Judged<'_>, reserve: u64, now_ms: u64) -> Result<Option<Entered>, Refused> {
    let Judged { tenant, label, name, limits, shadow } = j;
    worker.fleet_keys.touch(&name, now_ms);
    let updated = states::update(&worker.keys, &name, None, Missing::Claim, Hold::Judge(&limits), now_ms, |s| {
        let shadowed = shadow.and_then(|sh| admission::shadow_refusal(s, sh, now_ms));
        let (decision, transitions) = admission::admit(s, &limits, now_ms, reserve);
        (decision, transitions, shadowed)
    });
    let states::Updated { result: (decision, transitions, shadowed), info, key, claimed } = match updated {
        Ok(Some(u)) => u,
        Ok(None) => return Ok(None),
        Err(e) => {
            report::store_failed(worker, e);
            return Ok(None);
        }
    };
    if let Some(bucket) = claimed {
        worker.claims.claimed(Table::States, bucket);
    }
    report::update(worker, info, &transitions, tenant, Some(&label));
    match decision {
        Decision::Allow(a) => {
            let in_flight = InFlight { probe: a.probe, reserved: reserve };
            Ok(Some(Entered { held: Held { label, state: StateAt { name, key }, limits, in_flight }, shadowed }))
        }
        Decision::Deny(denied) => Err(Refused { label, denied }),
    }
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
