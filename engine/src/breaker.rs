//! The breaker state machine: CLOSED -> OPEN (cooldown, doubling on repeated trips) ->
//! HALF_OPEN (a fixed number of probes) -> CLOSED, or back to OPEN on a violating probe.
//!
//! The machine only moves when told about a violation or a finished probe; deciding what
//! is a violation is the admission module's job.

use crate::metric::Metric;
use crate::policy::BreakerSettings;
use serde::{Deserialize, Serialize};

/// Why a breaker opened: the metric that crossed its threshold and by how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Trip {
    pub metric: Metric,
    pub threshold: u64,
    pub observed: u64,
}

/// A threshold crossing together with how long its window needs to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub trip: Trip,
    /// Seconds until the window is back at the warning level if nothing more arrives.
    pub drain_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// The state names used in replies, events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
        }
    }
}

/// One state change, reported to logs, metrics and (later) the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: Phase,
    pub to: Phase,
    pub at_ms: u64,
    pub trip: Option<Trip>,
    pub open_until_ms: Option<u64>,
}

/// How a request admitted as a half-open probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEnd {
    /// The response completed; its usage decides the probe.
    Completed,
    /// The stream was reset or abandoned before completing: free the probe slot, decide nothing.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub state: BreakerState,
    /// Consecutive trips close together in time; drives the cooldown doubling.
    pub streak: u32,
    pub last_trip_ms: u64,
    pub last_trip: Option<Trip>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { state: BreakerState::Closed, streak: 0, last_trip_ms: 0, last_trip: None }
    }
}

impl Breaker {
    pub fn phase(&self) -> Phase {
        match self.state {
            BreakerState::Closed => Phase::Closed,
            BreakerState::Open { .. } => Phase::Open,
            BreakerState::HalfOpen { .. } => Phase::HalfOpen,
        }
    }

    /// Moves an expired OPEN to HALF_OPEN. Returns the transition if one happened.
    pub fn expire_cooldown(&mut self, now_ms: u64) -> Option<Transition> {
        match self.state {
            BreakerState::Open { until_ms } if now_ms >= until_ms => {
                self.state = BreakerState::HalfOpen { admitted: 0, succeeded: 0 };
                Some(Transition {
                    from: Phase::Open,
                    to: Phase::HalfOpen,
                    at_ms: now_ms,
                    trip: None,
                    open_until_ms: None,
                })
            }
            _ => None,
        }
    }

    /// Cooldown for the trip about to happen: base doubled per recent trip, capped.
    fn next_cooldown_s(&self, settings: &BreakerSettings, now_ms: u64) -> (u32, u64) {
        let recent = self.last_trip_ms > 0
            && now_ms.saturating_sub(self.last_trip_ms) <= u64::from(settings.max_cooldown_s) * 2 * 1000;
        let streak = if recent { self.streak.saturating_add(1) } else { 1 };
        let doublings = streak.saturating_sub(1).min(30);
        let cooldown =
            u64::from(settings.cooldown_s).saturating_mul(1u64 << doublings).min(u64::from(settings.max_cooldown_s));
        (streak, cooldown)
    }

    /// Opens the breaker for the cooldown, and at least until the window has drained.
    pub fn trip(&mut self, v: Violation, settings: &BreakerSettings, now_ms: u64) -> Transition {
        let from = self.phase();
        let (streak, cooldown_s) = self.next_cooldown_s(settings, now_ms);
        let open_s = cooldown_s.max(v.drain_s).max(1);
        let until_ms = now_ms.saturating_add(open_s.saturating_mul(1000));
        self.state = BreakerState::Open { until_ms };
        self.streak = streak;
        self.last_trip_ms = now_ms;
        self.last_trip = Some(v.trip);
        Transition { from, to: Phase::Open, at_ms: now_ms, trip: Some(v.trip), open_until_ms: Some(until_ms) }
    }

    /// Records the end of a half-open probe that did not violate anything.
    pub fn probe_ended(&mut self, end: ProbeEnd, settings: &BreakerSettings, now_ms: u64) -> Option<Transition> {
        let BreakerState::HalfOpen { admitted, succeeded } = self.state else {
            return None;
        };
        match end {
            ProbeEnd::Abandoned => {
                self.state = BreakerState::HalfOpen { admitted: admitted.saturating_sub(1), succeeded };
                None
            }
            ProbeEnd::Completed => {
                let succeeded = succeeded.saturating_add(1);
                if succeeded >= settings.half_open_probes {
                    self.state = BreakerState::Closed;
                    Some(Transition {
                        from: Phase::HalfOpen,
                        to: Phase::Closed,
                        at_ms: now_ms,
                        trip: None,
                        open_until_ms: None,
                    })
                } else {
                    self.state = BreakerState::HalfOpen { admitted, succeeded };
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings { cooldown_s: 10, max_cooldown_s: 60, half_open_probes: 2 }
    }

    fn violation(drain_s: u64) -> Violation {
        Violation { trip: Trip { metric: Metric::Tokens60s, threshold: 100, observed: 150 }, drain_s }
    }

    #[test]
    fn trip_opens_for_the_cooldown() {
        let mut b = Breaker::default();
        let t = b.trip(violation(0), &settings(), 1_000);
        assert_eq!(t.from, Phase::Closed);
        assert_eq!(b.state, BreakerState::Open { until_ms: 11_000 });
    }

    #[test]
    fn open_lasts_until_the_window_drains_when_that_is_longer() {
        let mut b = Breaker::default();
        b.trip(violation(45), &settings(), 1_000);
        assert_eq!(b.state, BreakerState::Open { until_ms: 46_000 });
    }

    #[test]
    fn repeated_trips_double_the_cooldown_up_to_the_maximum() {
        let s = settings();
        let mut b = Breaker::default();
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..5 {
            now += 1_000;
            b.trip(violation(0), &s, now);
            let BreakerState::Open { until_ms } = b.state else { panic!("not open") };
            lengths.push((until_ms - now) / 1000);
        }
        assert_eq!(lengths, vec![10, 20, 40, 60, 60]);
    }

    #[test]
    fn a_trip_long_after_the_last_one_starts_the_doubling_again() {
        let s = settings();
        let mut b = Breaker::default();
        b.trip(violation(0), &s, 1_000);
        b.trip(violation(0), &s, 2_000);
        assert_eq!(b.streak, 2);
        b.trip(violation(0), &s, 2_000 + 121_000);
        assert_eq!(b.streak, 1);
        assert_eq!(b.state, BreakerState::Open { until_ms: 133_000 });
    }

    #[test]
    fn cooldown_expiry_moves_to_half_open_once() {
        let mut b = Breaker::default();
        b.trip(violation(0), &settings(), 0);
        assert_eq!(b.expire_cooldown(9_999), None);
        let t = b.expire_cooldown(10_000).map(|t| (t.from, t.to));
        assert_eq!(t, Some((Phase::Open, Phase::HalfOpen)));
        assert_eq!(b.expire_cooldown(10_001), None);
    }

    #[test]
    fn enough_completed_probes_close_the_breaker() {
        let s = settings();
        let mut b = Breaker { state: BreakerState::HalfOpen { admitted: 2, succeeded: 0 }, ..Breaker::default() };
        assert_eq!(b.probe_ended(ProbeEnd::Completed, &s, 5), None);
        let t = b.probe_ended(ProbeEnd::Completed, &s, 6).map(|t| t.to);
        assert_eq!(t, Some(Phase::Closed));
        assert_eq!(b.state, BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let s = settings();
        let mut b = Breaker { state: BreakerState::HalfOpen { admitted: 2, succeeded: 1 }, ..Breaker::default() };
        assert_eq!(b.probe_ended(ProbeEnd::Abandoned, &s, 5), None);
        assert_eq!(b.state, BreakerState::HalfOpen { admitted: 1, succeeded: 1 });
    }
}
