//! Test helpers shared by the admission tests: a small tier and shorthands for admitting and
//! settling.

use super::decision::{admit, Allowed, Decision, Denied, Settlement};
use crate::breaker::ProbeEnd;
use crate::policy::{BreakerSettings, Limits};
use crate::state::TenantState;

pub(crate) const T0: u64 = 1_800_000_000_000;

pub(crate) fn limits() -> Limits {
    Limits {
        tokens_10s: Some(1000),
        tokens_60s: Some(3000),
        requests_10s: Some(5),
        warn_ratio: 0.5,
        breaker: BreakerSettings { cooldown_s: 2, max_cooldown_s: 60, half_open_probes: 1 },
        ..Limits::unlimited()
    }
}

/// A completed, clean response of `tokens`, released from in-flight.
pub(crate) fn done(tokens: u64) -> Settlement {
    Settlement { tokens, completed: true, release: true, ..Settlement::default() }
}

pub(crate) fn probe_done(tokens: u64) -> Settlement {
    Settlement { probe: Some(ProbeEnd::Completed), ..done(tokens) }
}

pub(crate) fn allow(state: &mut TenantState, l: &Limits, now: u64) -> Allowed {
    match admit(state, l, now, 0).0 {
        Decision::Allow(a) => a,
        Decision::Deny(d) => panic!("denied: {d:?}"),
    }
}

pub(crate) fn deny(state: &mut TenantState, l: &Limits, now: u64) -> Denied {
    match admit(state, l, now, 0).0 {
        Decision::Deny(d) => d,
        Decision::Allow(a) => panic!("allowed: {a:?}"),
    }
}
