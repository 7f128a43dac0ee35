//! Read-only views of a tenant's state: what the IETF `RateLimit` fields, the status endpoint
//! and the `max_tokens` clamp show of it.

use super::decision::{retry_after_s, BUDGETS, WINDOWED};
use crate::breaker::{BreakerState, Phase, Trip};
use crate::budget::{seconds_to_reset, Budget};
use crate::metric::Metric;
use crate::policy::{Forced, Limits};
use crate::state::TenantState;
use serde::Serialize;

/// Tokens left for a request's output in the tightest token window once usage and every
/// reservation are taken out, except `own_output`: the output allowance that request itself
/// holds (its prompt stays reserved). `None` when no token window is limited.
pub fn output_room(state: &TenantState, limits: &Limits, now_ms: u64, own_output: u64) -> Option<u64> {
    let now_s = now_ms / 1000;
    let reserved = state.reserved_tokens.saturating_sub(own_output);
    [Metric::Tokens10s, Metric::Tokens60s]
        .into_iter()
        .filter_map(|m| {
            let used = state.observe(m, now_s).saturating_add(reserved);
            limits.threshold(m).map(|t| t.saturating_sub(used))
        })
        .min()
}

/// Where a tenant stands against one quota-like limit, for the IETF `RateLimit` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub metric: Metric,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window has fully drained.
    pub reset_s: u64,
}

/// The tenant's standing against each limited window, in a fixed order.
pub fn quotas(state: &TenantState, limits: &Limits, now_ms: u64) -> Vec<Quota> {
    let now_s = now_ms / 1000;
    WINDOWED
        .into_iter()
        .filter_map(|metric| {
            let limit = limits.threshold(metric)?;
            let observed = state.observe(metric, now_s);
            Some(Quota {
                metric,
                limit,
                remaining: limit.saturating_sub(observed),
                reset_s: state.drain_s(metric, now_s, 0),
            })
        })
        .collect()
}

/// One metric as shown to a tenant by the status endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MetricStatus {
    pub metric: Metric,
    pub observed: u64,
    pub threshold: Option<u64>,
}

/// A budget as shown to a tenant by the status endpoint (cost in millionths of the currency).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BudgetStatus {
    pub budget: Budget,
    pub used: u64,
    pub limit: Option<u64>,
    pub resets_in_s: u64,
}

/// A read-only view of a tenant's state at `now_ms`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub state: Phase,
    /// Set while an operator holds the breaker open (kill switch) or closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced: Option<Forced>,
    pub retry_after_s: Option<u64>,
    pub last_trip: Option<Trip>,
    pub metrics: Vec<MetricStatus>,
    pub budgets: Vec<BudgetStatus>,
    /// Token estimates held by requests in flight.
    pub reserved_tokens: u64,
}

pub fn snapshot(state: &TenantState, limits: &Limits, now_ms: u64) -> Snapshot {
    let now_s = now_ms / 1000;
    let retry_after_s = match state.breaker.state {
        BreakerState::Open { until_ms } if until_ms > now_ms => Some(retry_after_s(until_ms, now_ms)),
        _ => None,
    };
    let phase = match (limits.operator.forced, state.breaker.state) {
        (Some(Forced::Open), _) => Phase::Open,
        (Some(Forced::Closed), _) => Phase::Closed,
        (None, BreakerState::Open { until_ms }) if until_ms <= now_ms => Phase::HalfOpen,
        (None, _) => state.breaker.phase(),
    };
    Snapshot {
        state: phase,
        forced: limits.operator.forced,
        retry_after_s,
        last_trip: state.breaker.last_trip,
        metrics: Metric::ALL
            .into_iter()
            .map(|metric| MetricStatus {
                metric,
                observed: state.observe(metric, now_s),
                threshold: limits.threshold(metric),
            })
            .collect(),
        budgets: BUDGETS
            .into_iter()
            .map(|budget| BudgetStatus {
                budget,
                used: state.budget.used(budget, now_s),
                limit: limits.budget_limit(budget, now_s),
                resets_in_s: seconds_to_reset(budget, now_s),
            })
            .collect(),
        reserved_tokens: state.reserved_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::super::decision::{admit, settle, Decision, Settlement};
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn snapshot_reports_state_and_windows() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(1200), T0);
        let snap = snapshot(&s, &l, T0 + 500);
        assert_eq!(snap.state, Phase::Open);
        assert_eq!(snap.retry_after_s, Some(10));
        assert_eq!(snap.metrics[1], MetricStatus { metric: Metric::Tokens60s, observed: 1200, threshold: Some(3000) });
    }

    #[test]
    fn quotas_report_what_remains_of_each_limited_window() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(400), T0);
        let q = quotas(&s, &l, T0 + 2000);
        assert_eq!(
            q.iter().map(|q| q.metric).collect::<Vec<_>>(),
            [Metric::Tokens10s, Metric::Tokens60s, Metric::Requests10s]
        );
        assert_eq!(q[0], Quota { metric: Metric::Tokens10s, limit: 1000, remaining: 600, reset_s: 8 });
        assert_eq!(q[1].reset_s, 58);
        assert_eq!(q[2].remaining, 4);
    }

    #[test]
    fn output_room_is_what_the_tightest_window_has_left() {
        let l = limits(); // 1000 per 10 s, 3000 per 60 s
        let mut s = TenantState::default();
        assert!(matches!(admit(&mut s, &l, T0, 150).0, Decision::Allow(_)));
        settle(&mut s, &l, Settlement { reserved: 150, ..done(700) }, T0);
        assert!(matches!(admit(&mut s, &l, T0, 100).0, Decision::Allow(_)));
        assert_eq!(output_room(&s, &l, T0, 0), Some(200));
        assert_eq!(output_room(&s, &Limits::unlimited(), T0, 0), None);
        // The request's own output allowance (say 80 of the 100 it reserved) is room for itself.
        assert_eq!(output_room(&s, &l, T0, 80), Some(280));
    }
}
