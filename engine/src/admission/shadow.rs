//! The read-only judgement of shadowed limits (see `policy::shadow`): would this request have
//! been refused had they been enforced? Checked in the same order as admission, over the same
//! state (usage is counted whatever the mode), before the request is counted.
//!
//! A shadowed limit has no breaker of its own: a request is shadow-refused while a shadowed
//! window is over its threshold, where an enforced one would also stay refused for its
//! cooldown after the window drained. So shadow counts are a lower bound of what enforcing
//! would refuse, never an over-count.

use super::decision::{
    error_violation, exhausted_budget, over_with_reservations, worst_violation, Denied, DenyCause, WINDOWED,
};
use crate::metric::Metric;
use crate::policy::{Limit, Limits};
use crate::state::TenantState;

/// The shadowed limit that would have refused a request arriving at `now_ms`, if any.
pub fn shadow_refusal(state: &TenantState, shadow: &Limits, now_ms: u64) -> Option<Limit> {
    let now_s = now_ms / 1000;
    if let Some(Denied { cause: DenyCause::Budget { budget, .. }, .. }) = exhausted_budget(state, shadow, now_s) {
        return Some(Limit::of_budget(budget));
    }
    if let Some(limit) = shadow.concurrency {
        if state.observe(Metric::Concurrency, now_s) >= limit {
            return Some(Limit::Concurrency);
        }
    }
    if let Some(v) = worst_violation(state, shadow, now_s, &WINDOWED, 1) {
        return Some(Limit::of_metric(v.trip.metric));
    }
    if let Some(v) = error_violation(state, shadow, now_s) {
        return Some(Limit::of_metric(v.trip.metric));
    }
    match over_with_reservations(state, shadow, now_s)? {
        DenyCause::Reserved { metric, .. } => Some(Limit::of_metric(metric)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::decision::{admit, settle, Decision};
    use super::super::testkit::*;
    use super::*;
    use crate::policy::LimitMode;

    fn shadowed(l: Limits) -> (Limits, Limits) {
        let (enforced, shadow) = l.split_shadow();
        (enforced, *shadow.unwrap())
    }

    #[test]
    fn a_shadowed_window_over_its_threshold_refuses_nobody_but_names_itself() {
        let mut l = limits();
        l.shadow = [Limit::Tokens10s].into_iter().collect();
        let (enforced, shadow) = shadowed(l);
        let mut s = TenantState::default();
        allow(&mut s, &enforced, T0);
        assert!(settle(&mut s, &enforced, done(1500), T0 + 10).is_empty(), "no trip on a shadowed limit");
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 20), Some(Limit::Tokens10s));
        allow(&mut s, &enforced, T0 + 20);
        // Once the window drains, nothing would refuse.
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 11_000), None);
    }

    #[test]
    fn enforcing_a_limit_that_was_shadowed_refuses_at_once() {
        let mut l = limits();
        l.mode = LimitMode::Shadow;
        let (enforced, shadow) = shadowed(l.clone());
        let mut s = TenantState::default();
        for i in 0..6 {
            allow(&mut s, &enforced, T0 + i);
        }
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 10), Some(Limit::Requests10s));
        l.mode = LimitMode::Enforce;
        let (now_enforced, none) = l.split_shadow();
        assert!(none.is_none());
        assert!(matches!(admit(&mut s, &now_enforced, T0 + 10, 0).0, Decision::Deny(_)));
    }

    #[test]
    fn shadowed_concurrency_and_budgets_are_judged_like_enforced_ones() {
        let l = Limits {
            concurrency: Some(1),
            budget_tokens_day: Some(100),
            mode: LimitMode::Shadow,
            ..Limits::unlimited()
        };
        let (enforced, shadow) = shadowed(l);
        let mut s = TenantState::default();
        allow(&mut s, &enforced, T0);
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 1), Some(Limit::Concurrency));
        settle(&mut s, &enforced, done(150), T0 + 2);
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 3), Some(Limit::BudgetTokensDay));
    }

    #[test]
    fn reservations_in_flight_count_against_a_shadowed_token_window() {
        let l = Limits { tokens_60s: Some(1000), shadow: [Limit::Tokens60s].into_iter().collect(), ..limits() };
        let (enforced, shadow) = shadowed(l);
        let mut s = TenantState::default();
        assert!(matches!(admit(&mut s, &enforced, T0, 1200).0, Decision::Allow(_)));
        assert_eq!(shadow_refusal(&s, &shadow, T0 + 1), Some(Limit::Tokens60s));
    }
}
