//! The admission decision and the settlement of a finished response, over one tenant's state.
//!
//! `admit` runs when a request arrives: it moves an expired OPEN breaker to HALF_OPEN, refuses
//! while OPEN (or while all half-open probes are out), refuses past the concurrency cap (without
//! tripping: it is a cap, not a velocity), trips the breaker if a window is already over its
//! threshold (or the request would push `requests_10s` over), and otherwise counts the request.
//! `settle` runs when the response ends (or is abandoned): it adds the tokens and tool calls,
//! releases the in-flight slot, records errors, trips the breaker if a threshold was crossed or
//! the error ratio is exceeded, or decides a half-open probe.
//!
//! Longer than most files here: one decision (admit, then settle) over one state, with its
//! tests beside it (about half the file); splitting it would part the two halves of the rules.

use crate::breaker::{Breaker, BreakerState, Phase, ProbeEnd, Transition, Trip, Violation};
use crate::budget::{seconds_to_reset, Budget};
use crate::metric::Metric;
use crate::policy::{Forced, Limits};
use crate::state::TenantState;

/// A metric or budget past the tier's warn ratio, for `x-fusebox-warning: tokens_60s=54%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning {
    pub name: &'static str,
    pub percent: u64,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}%", self.name, self.percent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Admitted as one of the half-open probes; its outcome decides the breaker.
    pub probe: bool,
    pub warning: Option<Warning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyCause {
    /// The breaker is open because this metric crossed its threshold.
    Tripped(Trip),
    /// Half-open, and every probe slot is taken.
    ProbesBusy,
    /// The concurrency cap: `in_flight` would exceed `limit`.
    Concurrency { limit: u64, in_flight: u64 },
    /// A budget is used up until it resets (`used` and `limit` in tokens or cost micros).
    Budget { budget: Budget, limit: u64, used: u64 },
    /// Tokens used plus those reserved by requests in flight are already over a token window:
    /// wait for them to finish (no trip; the breaker judges real usage only).
    Reserved { metric: Metric, threshold: u64, observed: u64 },
    /// An operator forced the tenant's breaker open (the kill switch).
    KillSwitch,
}

/// `retry-after` on a kill-switch refusal: the switch has no end time, so clients are told
/// to check back in a minute (and `x-should-retry: false`).
pub const KILL_SWITCH_RETRY_S: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub cause: DenyCause,
    pub phase: Phase,
    pub retry_after_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Denied),
}

fn warn_level(threshold: u64, warn_ratio: f64) -> u64 {
    // Thresholds are at most 2^40, exactly representable in f64.
    (threshold as f64 * warn_ratio).floor() as u64
}

/// Metrics whose sliding windows trip the breaker when over their threshold.
pub(super) const WINDOWED: [Metric; 4] =
    [Metric::Tokens10s, Metric::Tokens60s, Metric::Requests10s, Metric::ToolCalls60s];
/// The windows a finished response can push over (requests are judged at admission).
const SETTLED: [Metric; 3] = [Metric::Tokens10s, Metric::Tokens60s, Metric::ToolCalls60s];

/// Of `metrics`, the one over its threshold whose window takes longest to drain, if any.
pub(super) fn worst_violation(
    state: &TenantState,
    limits: &Limits,
    now_s: u64,
    metrics: &[Metric],
    pending_requests: u64,
) -> Option<Violation> {
    let mut worst: Option<Violation> = None;
    for &metric in metrics {
        let Some(threshold) = limits.threshold(metric) else { continue };
        let pending = if metric == Metric::Requests10s { pending_requests } else { 0 };
        let observed = state.observe(metric, now_s).saturating_add(pending);
        if observed <= threshold {
            continue;
        }
        // Stay open until the window is back at the warning level, so probes have headroom.
        let drain_s = state.drain_s(metric, now_s, warn_level(threshold, limits.warn_ratio));
        let v = Violation { trip: Trip { metric, threshold, observed }, drain_s };
        if worst.is_none_or(|w| v.drain_s > w.drain_s) {
            worst = Some(v);
        }
    }
    worst
}

/// The error ratio over its threshold, once the window holds enough completed responses.
pub(super) fn error_violation(state: &TenantState, limits: &Limits, now_s: u64) -> Option<Violation> {
    let threshold = limits.threshold(Metric::ErrorRatio)?;
    if state.completed_in_window(now_s) < u64::from(limits.error_min_requests) {
        return None;
    }
    let observed = state.observe(Metric::ErrorRatio, now_s);
    (observed > threshold)
        .then_some(Violation { trip: Trip { metric: Metric::ErrorRatio, threshold, observed }, drain_s: 0 })
}

pub(super) const BUDGETS: [Budget; 2] = [Budget::TokensDay, Budget::CostMonth];

fn warning(state: &TenantState, limits: &Limits, now_s: u64) -> Option<Warning> {
    let windows = WINDOWED.into_iter().map(|m| (m.as_str(), limits.threshold(m), state.observe(m, now_s)));
    let budgets = BUDGETS.into_iter().map(|b| (b.as_str(), limits.budget_limit(b, now_s), state.budget_used(b, now_s)));
    let mut best: Option<Warning> = None;
    for (name, threshold, observed) in windows.chain(budgets) {
        let Some(threshold) = threshold else { continue };
        if observed == 0 || (observed as f64) < threshold as f64 * limits.warn_ratio {
            continue;
        }
        let percent = observed.saturating_mul(100) / threshold;
        if best.is_none_or(|b| percent > b.percent) {
            best = Some(Warning { name, percent });
        }
    }
    best
}

/// A budget that is used up, if any, with the seconds until it resets.
pub(super) fn exhausted_budget(state: &TenantState, limits: &Limits, now_s: u64) -> Option<Denied> {
    BUDGETS.into_iter().find_map(|budget| {
        let limit = limits.budget_limit(budget, now_s)?;
        let used = state.budget_used(budget, now_s);
        (used >= limit).then(|| Denied {
            cause: DenyCause::Budget { budget, limit, used },
            phase: state.breaker.phase(),
            retry_after_s: seconds_to_reset(budget, now_s),
        })
    })
}

pub(super) fn retry_after_s(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

fn denied_open(state: &TenantState, now_ms: u64) -> Denied {
    let until_ms = match state.breaker.state {
        BreakerState::Open { until_ms } => until_ms,
        _ => now_ms,
    };
    let trip = state.breaker.last_trip.unwrap_or(Trip { metric: Metric::Tokens60s, threshold: 0, observed: 0 });
    Denied { cause: DenyCause::Tripped(trip), phase: Phase::Open, retry_after_s: retry_after_s(until_ms, now_ms) }
}

/// A token window that real usage plus outstanding reservations already exceed.
pub(super) fn over_with_reservations(state: &TenantState, limits: &Limits, now_s: u64) -> Option<DenyCause> {
    let reserved = state.reserved(now_s);
    if reserved == 0 {
        return None;
    }
    [Metric::Tokens10s, Metric::Tokens60s].into_iter().find_map(|metric| {
        let threshold = limits.threshold(metric)?;
        let observed = state.observe(metric, now_s).saturating_add(reserved);
        (observed > threshold).then_some(DenyCause::Reserved { metric, threshold, observed })
    })
}

/// An operator's `close` or `reset` (a newer epoch than the state has seen) puts the breaker
/// back to CLOSED and forgets its cooldown doubling.
fn apply_operator_epoch(state: &mut TenantState, limits: &Limits, now_ms: u64) -> Option<Transition> {
    if state.epoch == limits.operator.epoch {
        return None;
    }
    state.epoch = limits.operator.epoch;
    let from = state.breaker.phase();
    state.breaker = Breaker { last_trip: state.breaker.last_trip, ..Breaker::default() };
    (from != Phase::Closed).then_some(Transition {
        from,
        to: Phase::Closed,
        at_ms: now_ms,
        trip: None,
        open_until_ms: None,
    })
}

/// The output tokens to reserve for a request of this tenant, before its body says more: the
/// largest output among its recent responses, or the tier's default before there are any.
pub fn output_allowance(state: &TenantState, limits: &Limits) -> u64 {
    state.outputs.estimate().unwrap_or(limits.default_output_tokens)
}

/// Decides whether a request may go upstream, updating `state` in place. `reserve` is the
/// request's token estimate, held until its settlement so that concurrent requests see it.
pub fn admit(state: &mut TenantState, limits: &Limits, now_ms: u64, reserve: u64) -> (Decision, Vec<Transition>) {
    let now_s = now_ms / 1000;
    state.advance(now_s);
    let mut transitions: Vec<Transition> = apply_operator_epoch(state, limits, now_ms).into_iter().collect();
    let held_closed = match limits.operator.forced {
        Some(Forced::Open) => {
            let denied =
                Denied { cause: DenyCause::KillSwitch, phase: Phase::Open, retry_after_s: KILL_SWITCH_RETRY_S };
            return (Decision::Deny(denied), transitions);
        }
        Some(Forced::Closed) => true,
        None => false,
    };
    let mut probe = false;
    if !held_closed {
        if let BreakerState::Open { until_ms } = state.breaker.state {
            if now_ms < until_ms {
                return (Decision::Deny(denied_open(state, now_ms)), transitions);
            }
        }
        transitions.extend(state.breaker.expire_cooldown(now_ms));
        probe = match state.breaker.state {
            BreakerState::HalfOpen { admitted, .. } if admitted >= limits.breaker.half_open_probes => {
                let denied = Denied { cause: DenyCause::ProbesBusy, phase: Phase::HalfOpen, retry_after_s: 1 };
                return (Decision::Deny(denied), transitions);
            }
            BreakerState::HalfOpen { .. } => true,
            _ => false,
        };
    }
    if let Some(denied) = exhausted_budget(state, limits, now_s) {
        return (Decision::Deny(denied), transitions);
    }
    if let Some(limit) = limits.concurrency {
        let in_flight = state.observe(Metric::Concurrency, now_s);
        if in_flight >= limit {
            let cause = DenyCause::Concurrency { limit, in_flight: in_flight + 1 };
            let denied = Denied { cause, phase: state.breaker.phase(), retry_after_s: 1 };
            return (Decision::Deny(denied), transitions);
        }
    }
    if !held_closed {
        if let Some(v) = worst_violation(state, limits, now_s, &WINDOWED, 1) {
            transitions.push(state.breaker.trip(v, &limits.breaker, now_ms));
            return (Decision::Deny(denied_open(state, now_ms)), transitions);
        }
        if let Some(cause) = over_with_reservations(state, limits, now_s) {
            let denied = Denied { cause, phase: state.breaker.phase(), retry_after_s: 1 };
            return (Decision::Deny(denied), transitions);
        }
    }
    if let BreakerState::HalfOpen { admitted, succeeded } = state.breaker.state {
        state.breaker.state = BreakerState::HalfOpen { admitted: admitted.saturating_add(1), succeeded };
    }
    state.requests.add(now_s, 1);
    state.in_flight = state.in_flight.saturating_add(1);
    state.reserved_tokens = state.reserved_tokens.saturating_add(reserve);
    let allowed = Allowed { probe, warning: warning(state, limits, now_s) };
    (Decision::Allow(allowed), transitions)
}

/// How a response ended, as far as accounting goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement {
    pub tokens: u64,
    pub tool_calls: u64,
    /// The response completed (false for resets, timeouts, client disconnects).
    pub completed: bool,
    /// An upstream error: status 5xx or 429, or an error event in the body.
    pub error: bool,
    /// Set when the request was a half-open probe.
    pub probe: Option<ProbeEnd>,
    /// The admission counted this request in flight: release it.
    pub release: bool,
    /// Cost of the response in millionths of the price currency.
    pub cost_micros: u64,
    /// The estimate reserved at admission, released now.
    pub reserved: u64,
    /// Output tokens of a response that completed successfully, for the tenant's estimate.
    pub output_tokens: Option<u64>,
}

/// Accounts a finished (or abandoned) response and moves the breaker.
pub fn settle(state: &mut TenantState, limits: &Limits, s: Settlement, now_ms: u64) -> Vec<Transition> {
    let now_s = now_ms / 1000;
    state.advance(now_s);
    state.tokens.add(now_s, s.tokens);
    state.tool_calls.add(now_s, s.tool_calls);
    state.budget.add(now_s, s.tokens, s.cost_micros);
    if s.release {
        state.in_flight = state.in_flight.saturating_sub(1);
        state.reserved_tokens = state.reserved_tokens.saturating_sub(s.reserved);
    }
    if s.completed {
        state.completed.add(now_s, 1);
        state.errors.add(now_s, u64::from(s.error));
    }
    if let Some(output) = s.output_tokens {
        state.outputs.record(output);
    }
    let mut transitions = Vec::new();
    let phase = state.breaker.phase();
    if phase == Phase::Open || limits.operator.forced == Some(Forced::Closed) {
        return transitions;
    }
    let mut violation = worst_violation(state, limits, now_s, &SETTLED, 0);
    if violation.is_none() && s.completed && s.error {
        violation = match phase {
            // A probe that fails upstream fails the probe, if errors are limited at all.
            Phase::HalfOpen if s.probe.is_some() => limits.threshold(Metric::ErrorRatio).map(|threshold| Violation {
                trip: Trip {
                    metric: Metric::ErrorRatio,
                    threshold,
                    observed: state.observe(Metric::ErrorRatio, now_s),
                },
                drain_s: 0,
            }),
            _ => error_violation(state, limits, now_s),
        };
    }
    if let Some(v) = violation {
        transitions.push(state.breaker.trip(v, &limits.breaker, now_ms));
        return transitions;
    }
    if let Some(end) = s.probe {
        transitions.extend(state.breaker.probe_ended(end, &limits.breaker, now_ms));
    }
    transitions
}

/// If the tenant's breaker is open at `now_ms`, the denial a new request would get (used to end
/// streams in flight). Read-only.
pub fn open_denial(state: &TenantState, now_ms: u64) -> Option<Denied> {
    match state.breaker.state {
        BreakerState::Open { until_ms } if now_ms < until_ms => Some(denied_open(state, now_ms)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::status::snapshot;
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn tokens_over_threshold_trip_the_breaker_at_settlement() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        assert!(settle(&mut s, &l, done(600), T0 + 100).is_empty());
        allow(&mut s, &l, T0 + 200);
        let t = settle(&mut s, &l, done(600), T0 + 300);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].trip, Some(Trip { metric: Metric::Tokens10s, threshold: 1000, observed: 1200 }));
        let d = deny(&mut s, &l, T0 + 400);
        assert_eq!(d.cause, DenyCause::Tripped(Trip { metric: Metric::Tokens10s, threshold: 1000, observed: 1200 }));
        assert_eq!(d.phase, Phase::Open);
        // The 10 s window needs all of its 1200 tokens gone to be back under 500.
        assert_eq!(d.retry_after_s, 10);
    }

    #[test]
    fn request_rate_limit_denies_the_request_that_would_exceed_it() {
        let l = limits();
        let mut s = TenantState::default();
        for i in 0..5 {
            allow(&mut s, &l, T0 + i * 10);
        }
        let d = deny(&mut s, &l, T0 + 60);
        assert_eq!(d.cause, DenyCause::Tripped(Trip { metric: Metric::Requests10s, threshold: 5, observed: 6 }));
        assert_eq!(s.requests.sum(T0 / 1000, 10), 5, "denied requests are not counted");
    }

    #[test]
    fn clean_probe_after_cooldown_closes_the_breaker() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(1500), T0);
        let retry = deny(&mut s, &l, T0 + 1).retry_after_s;
        let later = T0 + retry * 1000;
        let (decision, transitions) = admit(&mut s, &l, later, 0);
        assert!(matches!(decision, Decision::Allow(Allowed { probe: true, .. })), "{decision:?}");
        assert_eq!(transitions.iter().map(|t| t.to).collect::<Vec<_>>(), vec![Phase::HalfOpen]);
        // Only one probe at a time.
        assert_eq!(deny(&mut s, &l, later + 1).cause, DenyCause::ProbesBusy);
        let t = settle(&mut s, &l, probe_done(100), later + 2);
        assert_eq!(t.iter().map(|t| t.to).collect::<Vec<_>>(), vec![Phase::Closed]);
        assert!(!allow(&mut s, &l, later + 3).probe);
    }

    #[test]
    fn violating_probe_reopens_with_a_longer_cooldown() {
        let mut l = limits();
        l.tokens_10s = None;
        l.requests_10s = None;
        l.breaker.cooldown_s = 70; // longer than the 60 s window drains
        l.breaker.max_cooldown_s = 600;
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(3500), T0);
        let first = deny(&mut s, &l, T0 + 1).retry_after_s;
        assert_eq!(first, 70);
        let later = T0 + 70_000;
        assert!(allow(&mut s, &l, later).probe);
        let t = settle(&mut s, &l, probe_done(3500), later + 10);
        assert_eq!((t[0].from, t[0].to), (Phase::HalfOpen, Phase::Open));
        assert_eq!(deny(&mut s, &l, later + 20).retry_after_s, 140);
    }

    #[test]
    fn abandoned_probe_lets_another_probe_in() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(1500), T0);
        let later = T0 + 20_000;
        assert!(allow(&mut s, &l, later).probe);
        settle(
            &mut s,
            &l,
            Settlement { probe: Some(ProbeEnd::Abandoned), release: true, ..Settlement::default() },
            later + 1,
        );
        assert!(allow(&mut s, &l, later + 2).probe);
    }

    #[test]
    fn warning_names_the_metric_nearest_its_limit() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(540), T0);
        let a = allow(&mut s, &l, T0 + 1);
        assert_eq!(a.warning, Some(Warning { name: "tokens_10s", percent: 54 }));
        assert_eq!(a.warning.unwrap().to_string(), "tokens_10s=54%");
    }

    #[test]
    fn no_warning_below_the_warn_ratio() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(100), T0);
        assert_eq!(allow(&mut s, &l, T0 + 1).warning, None);
    }

    #[test]
    fn unlimited_metrics_never_trip() {
        let l = Limits::unlimited();
        let mut s = TenantState::default();
        for i in 0..100 {
            allow(&mut s, &l, T0 + i);
            assert!(settle(&mut s, &l, done(1_000_000), T0 + i).is_empty());
        }
    }

    #[test]
    fn the_rest_of_the_fleets_tokens_and_slots_count_against_the_same_limits() {
        let mut l = limits(); // tokens_10s 1000
        l.concurrency = Some(3);
        let mut s = TenantState::default();
        s.fleet.in_flight = 3;
        s.fleet.as_of_ms = T0;
        let (d, _) = admit(&mut s, &l, T0, 0);
        assert!(matches!(d, Decision::Deny(Denied { cause: DenyCause::Concurrency { .. }, .. })));
        s.fleet.in_flight = 0;
        s.fleet.tokens.add(T0 / 1000, 1500);
        let (d, t) = admit(&mut s, &l, T0, 0);
        assert!(matches!(d, Decision::Deny(_)), "over the window by the fleet's tokens alone");
        assert_eq!(t[0].trip.map(|t| (t.metric, t.observed)), Some((Metric::Tokens10s, 1500)));
    }

    #[test]
    fn reservations_of_requests_in_flight_hold_back_new_ones_without_tripping() {
        let l = limits(); // tokens_10s 1000
        let mut s = TenantState::default();
        assert!(matches!(admit(&mut s, &l, T0, 600).0, Decision::Allow(_)));
        assert!(matches!(admit(&mut s, &l, T0, 600).0, Decision::Allow(_)), "600 reserved is not over 1000");
        let (d, t) = admit(&mut s, &l, T0, 600);
        assert_eq!(
            d,
            Decision::Deny(Denied {
                cause: DenyCause::Reserved { metric: Metric::Tokens10s, threshold: 1000, observed: 1200 },
                phase: Phase::Closed,
                retry_after_s: 1,
            })
        );
        assert!(t.is_empty());
        // The first finishes using far less than it reserved: room again.
        settle(&mut s, &l, Settlement { reserved: 600, ..done(100) }, T0 + 1);
        assert_eq!(s.reserved_tokens, 600);
        assert!(matches!(admit(&mut s, &l, T0 + 2, 600).0, Decision::Allow(_)));
    }

    #[test]
    fn exhausted_token_budget_refuses_until_midnight_utc_without_tripping() {
        let l = Limits { budget_tokens_day: Some(1000), ..Limits::unlimited() };
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(600), T0);
        let a = allow(&mut s, &l, T0 + 1);
        assert_eq!(a.warning, Some(Warning { name: "budget_tokens_day", percent: 60 }));
        settle(&mut s, &l, done(600), T0 + 2);
        let d = deny(&mut s, &l, T0 + 3);
        assert_eq!(d.cause, DenyCause::Budget { budget: Budget::TokensDay, limit: 1000, used: 1200 });
        assert_eq!(d.retry_after_s, 86_400 - (T0 + 3) / 1000 % 86_400);
        assert_eq!(s.breaker.phase(), Phase::Closed);
        let next_day = (T0 / 1000 / 86_400 + 1) * 86_400_000;
        allow(&mut s, &l, next_day);
    }

    #[test]
    fn exhausted_cost_budget_refuses_until_next_month() {
        let l = Limits { budget_cost_month: Some(0.01), ..Limits::unlimited() };
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, Settlement { cost_micros: 10_000, ..done(5) }, T0);
        let d = deny(&mut s, &l, T0 + 1);
        assert_eq!(d.cause, DenyCause::Budget { budget: Budget::CostMonth, limit: 10_000, used: 10_000 });
        assert!(d.retry_after_s > 86_400, "{}", d.retry_after_s);
    }

    #[test]
    fn concurrency_cap_refuses_without_tripping_and_releases_on_settle() {
        let l = Limits { concurrency: Some(2), ..limits() };
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        allow(&mut s, &l, T0);
        let d = deny(&mut s, &l, T0);
        assert_eq!(d.cause, DenyCause::Concurrency { limit: 2, in_flight: 3 });
        assert_eq!((d.phase, d.retry_after_s), (Phase::Closed, 1));
        assert_eq!(s.breaker.phase(), Phase::Closed);
        // An abandoned stream releases its slot too.
        settle(&mut s, &l, Settlement { release: true, ..Settlement::default() }, T0);
        allow(&mut s, &l, T0);
        assert_eq!(s.in_flight, 2);
    }

    #[test]
    fn tool_calls_over_threshold_trip_the_breaker() {
        let l = Limits { tool_calls_60s: Some(3), ..limits() };
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        assert!(settle(&mut s, &l, Settlement { tool_calls: 3, ..done(10) }, T0).is_empty());
        allow(&mut s, &l, T0);
        let t = settle(&mut s, &l, Settlement { tool_calls: 1, ..done(10) }, T0);
        assert_eq!(t[0].trip.map(|t| (t.metric, t.observed)), Some((Metric::ToolCalls60s, 4)));
    }

    #[test]
    fn error_ratio_trips_only_after_the_minimum_sample() {
        let l = Limits { error_ratio: Some(0.5), error_min_requests: 4, requests_10s: None, ..limits() };
        let mut s = TenantState::default();
        let error = Settlement { error: true, ..done(0) };
        for _ in 0..3 {
            allow(&mut s, &l, T0);
            assert!(settle(&mut s, &l, error, T0).is_empty(), "3 of 3 failed, but the sample is too small");
        }
        allow(&mut s, &l, T0);
        let t = settle(&mut s, &l, error, T0);
        assert_eq!(t[0].trip, Some(Trip { metric: Metric::ErrorRatio, threshold: 50, observed: 100 }));
    }

    #[test]
    fn successes_keep_the_error_ratio_under_its_threshold() {
        let l = Limits { error_ratio: Some(0.5), error_min_requests: 4, requests_10s: None, ..limits() };
        let mut s = TenantState::default();
        for i in 0..10 {
            allow(&mut s, &l, T0);
            let outcome = Settlement { error: i % 2 == 1, ..done(0) };
            assert!(settle(&mut s, &l, outcome, T0).is_empty(), "at {i}");
        }
        assert_eq!(s.observe(Metric::ErrorRatio, T0 / 1000), 50);
    }

    #[test]
    fn a_probe_that_fails_upstream_reopens_the_breaker() {
        let l = Limits { error_ratio: Some(0.5), ..limits() };
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(1500), T0);
        let later = T0 + 20_000;
        assert!(allow(&mut s, &l, later).probe);
        let t = settle(&mut s, &l, Settlement { error: true, ..probe_done(0) }, later);
        assert_eq!((t[0].from, t[0].to), (Phase::HalfOpen, Phase::Open));
    }

    fn with_operator(l: Limits, forced: Option<Forced>, epoch: u64) -> Limits {
        Limits { operator: crate::policy::Operator { forced, epoch }, ..l }
    }

    #[test]
    fn kill_switch_refuses_a_tenant_that_is_under_every_limit() {
        let l = with_operator(limits(), Some(Forced::Open), 0);
        let mut s = TenantState::default();
        let d = deny(&mut s, &l, T0);
        assert_eq!(d.cause, DenyCause::KillSwitch);
        assert_eq!(d.phase, Phase::Open);
        assert_eq!(d.retry_after_s, KILL_SWITCH_RETRY_S);
        assert_eq!(s.requests.sum(T0 / 1000, 10), 0, "refused requests are not counted");
        assert_eq!(snapshot(&s, &l, T0).state, Phase::Open);
        assert_eq!(snapshot(&s, &l, T0).forced, Some(Forced::Open));
    }

    #[test]
    fn breaker_held_closed_admits_past_thresholds_but_keeps_counting() {
        let l = with_operator(limits(), Some(Forced::Closed), 0);
        let mut s = TenantState::default();
        for i in 0..8 {
            allow(&mut s, &l, T0 + i);
            assert!(settle(&mut s, &l, done(600), T0 + i).is_empty(), "no trip while held closed");
        }
        assert_eq!(s.observe(Metric::Tokens10s, T0 / 1000), 4800);
        assert_eq!(s.breaker.phase(), Phase::Closed);
        // Released to automatic (same epoch), the windows over threshold trip it at once.
        let auto = with_operator(limits(), None, 0);
        assert!(matches!(deny(&mut s, &auto, T0 + 10).cause, DenyCause::Tripped(_)));
    }

    #[test]
    fn breaker_held_closed_still_enforces_caps_and_budgets() {
        let l = with_operator(Limits { concurrency: Some(1), ..limits() }, Some(Forced::Closed), 0);
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        assert!(matches!(deny(&mut s, &l, T0).cause, DenyCause::Concurrency { .. }));
        let l = with_operator(Limits { budget_tokens_day: Some(100), ..limits() }, Some(Forced::Closed), 0);
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(100), T0);
        assert!(matches!(deny(&mut s, &l, T0).cause, DenyCause::Budget { .. }));
    }

    #[test]
    fn a_new_operator_epoch_closes_an_open_breaker_and_forgets_its_doubling() {
        let l = limits();
        let mut s = TenantState::default();
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(1500), T0);
        assert_eq!(s.breaker.phase(), Phase::Open);
        assert_eq!(s.breaker.streak, 1);
        // The window drained enough for the reset to matter: 10 s later, 60 s window still has 1500 < 3000.
        let reset = with_operator(limits(), None, 1);
        let (decision, transitions) = admit(&mut s, &reset, T0 + 10_500, 0);
        assert!(matches!(decision, Decision::Allow(Allowed { probe: false, .. })), "{decision:?}");
        assert_eq!(transitions.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(), vec![(Phase::Open, Phase::Closed)]);
        assert_eq!(s.breaker.streak, 0);
        assert_eq!(s.epoch, 1);
        // The same epoch again changes nothing.
        assert!(admit(&mut s, &reset, T0 + 10_600, 0).1.is_empty());
    }

    #[test]
    fn the_output_allowance_is_the_tier_default_until_responses_teach_it() {
        let l = Limits { default_output_tokens: 900, ..limits() };
        let mut s = TenantState::default();
        assert_eq!(output_allowance(&s, &l), 900);
        for output in [120, 480, 300] {
            allow(&mut s, &l, T0);
            settle(&mut s, &l, Settlement { output_tokens: Some(output), ..done(output) }, T0);
        }
        assert_eq!(output_allowance(&s, &l), 480);
        allow(&mut s, &l, T0);
        settle(&mut s, &l, done(5000), T0);
        assert_eq!(output_allowance(&s, &l), 480, "a settlement without a learned output teaches nothing");
    }
}
