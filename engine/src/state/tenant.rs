//! Per-tenant state as it lives in Envoy shared data: usage windows plus the breaker,
//! in one compact binary value so one read and one compare-and-swap cover a request.

use super::outputs::RecentOutputs;
use crate::breaker::{Breaker, BreakerState, Trip};
use crate::budget::Budget;
use crate::budget::BudgetState;
use crate::fleet::FleetUsage;
use crate::metric::Metric;
use crate::state::codec::{take_u32, take_u64, take_u8};
pub use crate::state::window::MinuteRing;
use crate::state::window::{Ring, SecondRing};

const MAGIC: u8 = b'F';
/// Format 7 added the fleet's usage at the end, format 6 the recent outputs; values of the
/// two previous formats (still in shared data across a plugin reload) read with neither.
const FORMAT: u8 = 7;
const FORMAT_WITHOUT_FLEET: u8 = 6;
const FORMAT_WITHOUT_OUTPUTS: u8 = 5;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantState {
    /// Tokens per second over the last 60 s (serves the 10 s and 60 s windows).
    pub tokens: SecondRing<60>,
    /// Admitted requests per second over the last 10 s.
    pub requests: SecondRing<10>,
    pub tool_calls: MinuteRing,
    /// Completed responses, and those of them that were upstream errors.
    pub completed: MinuteRing,
    pub errors: MinuteRing,
    /// Admitted requests whose response has not ended yet.
    pub in_flight: u32,
    /// Token estimates reserved by those requests, released when each ends.
    pub reserved_tokens: u64,
    pub budget: BudgetState,
    pub breaker: Breaker,
    /// The operator epoch ([`crate::policy::Operator::epoch`]) this breaker has seen.
    pub epoch: u64,
    /// What the tenant's recent responses produced (the output estimate of new requests).
    pub outputs: RecentOutputs,
    /// Every other Envoy's usage of this key, as of the last fleet sync (empty without one).
    pub fleet: FleetUsage,
}

impl TenantState {
    /// Current value of a metric at `now_s`, this Envoy's usage plus the fleet's (error ratio:
    /// this Envoy's, in percent of its completed responses).
    pub fn observe(&self, metric: Metric, now_s: u64) -> u64 {
        let w = metric.window_s();
        let f = &self.fleet;
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => self.tokens.sum(now_s, w) + f.tokens.sum(now_s, w),
            Metric::Requests10s => self.requests.sum(now_s, w) + f.requests.sum(now_s, w),
            Metric::ToolCalls60s => self.tool_calls.sum(now_s, w) + f.tool_calls.sum(now_s, w),
            Metric::ErrorRatio => {
                self.errors.sum(now_s, w).saturating_mul(100).checked_div(self.completed.sum(now_s, w)).unwrap_or(0)
            }
            Metric::Concurrency => u64::from(self.in_flight) + u64::from(f.in_flight_at(now_s.saturating_mul(1000))),
        }
    }

    /// Tokens reserved by requests in flight, here and (while fresh) elsewhere in the fleet.
    pub fn reserved(&self, now_s: u64) -> u64 {
        self.reserved_tokens.saturating_add(self.fleet.reserved_at(now_s.saturating_mul(1000)))
    }

    /// A budget's use at `now_s`, here and in the rest of the fleet.
    pub fn budget_used(&self, budget: Budget, now_s: u64) -> u64 {
        self.budget.used(budget, now_s).saturating_add(self.fleet.budget.used(budget, now_s))
    }

    /// This Envoy's own usage, as a fleet sync reports it (gauges true at `now_ms`).
    /// Windows are moved on to `now_ms` first: a key idle for a while sends only what is
    /// still inside them.
    pub fn local_usage(&self, now_ms: u64) -> FleetUsage {
        let mut u = FleetUsage {
            tokens: self.tokens.clone(),
            requests: self.requests.clone(),
            tool_calls: self.tool_calls.clone(),
            in_flight: self.in_flight,
            reserved_tokens: self.reserved_tokens,
            budget: self.budget,
            as_of_ms: now_ms,
        };
        let now_s = now_ms / 1000;
        u.tokens.advance(now_s);
        u.requests.advance(now_s);
        u.tool_calls.advance(now_s);
        u
    }

    /// Completed responses in the error-ratio window.
    pub fn completed_in_window(&self, now_s: u64) -> u64 {
        self.completed.sum(now_s, Metric::ErrorRatio.window_s())
    }

    /// Seconds until a windowed `metric` (here and in the fleet) is at or below `target`, if
    /// nothing more arrives (0 for metrics that do not drain with time).
    pub fn drain_s(&self, metric: Metric, now_s: u64, target: u64) -> u64 {
        fn drain<const N: usize, const W: u64>(
            local: &Ring<N, W>,
            fleet: &Ring<N, W>,
            now_s: u64,
            w: u64,
            target: u64,
        ) -> u64 {
            if fleet.is_empty() {
                return local.seconds_until_at_most(now_s, w, target);
            }
            let mut both = local.clone();
            both.merge(fleet);
            both.seconds_until_at_most(now_s, w, target)
        }
        let (w, f) = (metric.window_s(), &self.fleet);
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => drain(&self.tokens, &f.tokens, now_s, w, target),
            Metric::Requests10s => drain(&self.requests, &f.requests, now_s, w, target),
            Metric::ToolCalls60s => drain(&self.tool_calls, &f.tool_calls, now_s, w, target),
            Metric::ErrorRatio | Metric::Concurrency => 0,
        }
    }

    /// Takes in a state that was counted apart for the same name (two workers claiming a slot
    /// for a new tenant at once, see `slot.rs`): every count adds, the rest stays this one's.
    pub fn absorb(&mut self, other: &TenantState) {
        self.tokens.merge(&other.tokens);
        self.requests.merge(&other.requests);
        self.tool_calls.merge(&other.tool_calls);
        self.completed.merge(&other.completed);
        self.errors.merge(&other.errors);
        self.in_flight = self.in_flight.saturating_add(other.in_flight);
        self.reserved_tokens = self.reserved_tokens.saturating_add(other.reserved_tokens);
        let b = &other.budget;
        if (self.budget.day, self.budget.month) == (0, 0) {
            self.budget = *b;
        } else {
            if b.day == self.budget.day {
                self.budget.tokens_day = self.budget.tokens_day.saturating_add(b.tokens_day);
            }
            if b.month == self.budget.month {
                self.budget.cost_month_micros = self.budget.cost_month_micros.saturating_add(b.cost_month_micros);
            }
        }
    }

    pub fn advance(&mut self, now_s: u64) {
        self.tokens.advance(now_s);
        self.requests.advance(now_s);
        self.tool_calls.advance(now_s);
        self.completed.advance(now_s);
        self.errors.advance(now_s);
    }

    /// Room to reserve for an encoded state (its fixed fields, windows and fleet usage).
    pub const ENCODED_CAPACITY: usize = 98
        + RecentOutputs::ENCODED_LEN
        + SecondRing::<60>::ENCODED_LEN
        + SecondRing::<10>::ENCODED_LEN
        + 3 * MinuteRing::ENCODED_LEN
        + FleetUsage::ENCODED_LEN;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::ENCODED_CAPACITY);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded state to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.push(FORMAT);
        self.tokens.encode(out);
        self.requests.encode(out);
        self.tool_calls.encode(out);
        self.completed.encode(out);
        self.errors.encode(out);
        out.extend_from_slice(&self.in_flight.to_le_bytes());
        out.extend_from_slice(&self.reserved_tokens.to_le_bytes());
        self.budget.encode(out);
        let b = &self.breaker;
        let (tag, until_ms, admitted, succeeded) = match b.state {
            BreakerState::Closed => (0u8, 0u64, 0u32, 0u32),
            BreakerState::Open { until_ms } => (1, until_ms, 0, 0),
            BreakerState::HalfOpen { admitted, succeeded } => (2, 0, admitted, succeeded),
        };
        out.push(tag);
        out.extend_from_slice(&until_ms.to_le_bytes());
        out.extend_from_slice(&admitted.to_le_bytes());
        out.extend_from_slice(&succeeded.to_le_bytes());
        out.extend_from_slice(&b.streak.to_le_bytes());
        out.extend_from_slice(&b.last_trip_ms.to_le_bytes());
        let (code, threshold, observed) = match b.last_trip {
            Some(t) => (t.metric.code(), t.threshold, t.observed),
            None => (0, 0, 0),
        };
        out.push(code);
        out.extend_from_slice(&threshold.to_le_bytes());
        out.extend_from_slice(&observed.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        self.outputs.encode(out);
        if self.fleet == FleetUsage::default() {
            out.push(0);
        } else {
            out.push(1);
            self.fleet.encode(out);
        }
    }

    /// Decodes a value written by [`TenantState::encode`]; `None` for anything else
    /// (an empty value, a future format, corruption).
    pub fn decode(bytes: &[u8]) -> Option<TenantState> {
        let mut input = bytes;
        if take_u8(&mut input)? != MAGIC {
            return None;
        }
        let format = take_u8(&mut input)?;
        if !matches!(format, FORMAT | FORMAT_WITHOUT_FLEET | FORMAT_WITHOUT_OUTPUTS) {
            return None;
        }
        let tokens = SecondRing::decode(&mut input)?;
        let requests = SecondRing::decode(&mut input)?;
        let tool_calls = MinuteRing::decode(&mut input)?;
        let completed = MinuteRing::decode(&mut input)?;
        let errors = MinuteRing::decode(&mut input)?;
        let in_flight = take_u32(&mut input)?;
        let reserved_tokens = take_u64(&mut input)?;
        let budget = BudgetState::decode(&mut input)?;
        let tag = take_u8(&mut input)?;
        let until_ms = take_u64(&mut input)?;
        let admitted = take_u32(&mut input)?;
        let succeeded = take_u32(&mut input)?;
        let state = match tag {
            0 => BreakerState::Closed,
            1 => BreakerState::Open { until_ms },
            2 => BreakerState::HalfOpen { admitted, succeeded },
            _ => return None,
        };
        let streak = take_u32(&mut input)?;
        let last_trip_ms = take_u64(&mut input)?;
        let code = take_u8(&mut input)?;
        let threshold = take_u64(&mut input)?;
        let observed = take_u64(&mut input)?;
        let last_trip = match code {
            0 => None,
            c => Some(Trip { metric: Metric::from_code(c)?, threshold, observed }),
        };
        let epoch = take_u64(&mut input)?;
        let outputs =
            if format >= FORMAT_WITHOUT_FLEET { RecentOutputs::decode(&mut input)? } else { RecentOutputs::default() };
        let fleet = match format {
            FORMAT => match take_u8(&mut input)? {
                0 => FleetUsage::default(),
                1 => FleetUsage::decode(&mut input)?,
                _ => return None,
            },
            _ => FleetUsage::default(),
        };
        if !input.is_empty() {
            return None;
        }
        Some(TenantState {
            tokens,
            requests,
            tool_calls,
            completed,
            errors,
            in_flight,
            reserved_tokens,
            budget,
            breaker: Breaker { state, streak, last_trip_ms, last_trip },
            epoch,
            outputs,
            fleet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = TenantState::default();
        s.tokens.add(1_700_000_000, 1234);
        s.requests.add(1_700_000_000, 3);
        s.tool_calls.add(1_700_000_000, 2);
        s.completed.add(1_700_000_000, 5);
        s.errors.add(1_700_000_000, 1);
        s.in_flight = 4;
        s.reserved_tokens = 999;
        s.budget.add(1_700_000_000, 77, 1234);
        s.breaker = Breaker {
            state: BreakerState::HalfOpen { admitted: 2, succeeded: 1 },
            streak: 3,
            last_trip_ms: 1_699_999_999_000,
            last_trip: Some(Trip { metric: Metric::Tokens60s, threshold: 60_000, observed: 61_234 }),
        };
        s.epoch = 7;
        s.outputs.record(321);
        assert_eq!(TenantState::decode(&s.encode()), Some(s.clone()));
        s.fleet.tokens.add(1_700_000_000, 55);
        s.fleet.in_flight = 2;
        s.fleet.as_of_ms = 1_700_000_000_000;
        assert_eq!(TenantState::decode(&s.encode()), Some(s));
    }

    #[test]
    fn a_state_written_by_the_previous_format_reads_with_no_outputs_remembered() {
        let mut s = TenantState::default();
        s.tokens.add(1_700_000_000, 42);
        s.outputs.record(900);
        let mut old = s.encode();
        old.truncate(old.len() - 1 - RecentOutputs::ENCODED_LEN);
        old[1] = FORMAT_WITHOUT_OUTPUTS;
        let read = TenantState::decode(&old).expect("format 5 still reads");
        assert_eq!(read.tokens, s.tokens);
        assert_eq!(read.outputs.estimate(), None);
    }

    #[test]
    fn a_state_written_before_fleet_counting_reads_with_no_fleet_usage() {
        let mut s = TenantState::default();
        s.outputs.record(900);
        let mut old = s.encode();
        old.truncate(old.len() - 1);
        old[1] = FORMAT_WITHOUT_FLEET;
        assert_eq!(TenantState::decode(&old), Some(s));
    }

    #[test]
    fn windows_gauges_and_budgets_count_the_fleet_and_stale_gauges_do_not() {
        let now = 1_700_000_000;
        let mut s = TenantState::default();
        s.tokens.add(now, 100);
        s.in_flight = 1;
        s.reserved_tokens = 10;
        s.budget.add(now, 100, 0);
        s.fleet.tokens.add(now - 1, 250);
        s.fleet.in_flight = 3;
        s.fleet.reserved_tokens = 30;
        s.fleet.budget.add(now, 250, 0);
        s.fleet.as_of_ms = now * 1000;
        assert_eq!(s.observe(Metric::Tokens10s, now), 350);
        assert_eq!(s.observe(Metric::Concurrency, now), 4);
        assert_eq!(s.reserved(now), 40);
        assert_eq!(s.budget_used(Budget::TokensDay, now), 350);
        // The fleet's bucket (now - 1) leaves the 10 s window a second before ours does.
        assert_eq!(s.drain_s(Metric::Tokens10s, now, 100), 9);
        let later = now + crate::fleet::GAUGE_TTL_MS / 1000 + 1;
        assert_eq!(s.observe(Metric::Concurrency, later), 1, "another Envoy's slots expire");
        assert_eq!(s.reserved(later), 10);
    }

    #[test]
    fn the_usage_a_sync_reports_is_only_what_is_still_inside_the_windows() {
        let then = 1_700_000_000;
        let mut s = TenantState::default();
        s.tokens.add(then, 100);
        s.requests.add(then, 1);
        s.in_flight = 2;
        s.fleet.tokens.add(then, 7);
        let now_ms = (then + 30) * 1000;
        let u = s.local_usage(now_ms);
        assert_eq!(u.tokens.entries().collect::<Vec<_>>(), [(then, 100)], "ours, never the fleet's");
        assert!(u.requests.is_empty(), "the 10 s window moved past it");
        assert_eq!((u.in_flight, u.as_of_ms), (2, now_ms));
        assert!(s.local_usage((then + 61) * 1000).tokens.is_empty());
    }

    #[test]
    fn garbage_and_empty_values_do_not_decode() {
        assert_eq!(TenantState::decode(b""), None);
        assert_eq!(TenantState::decode(b"hello"), None);
        let mut bytes = TenantState::default().encode();
        bytes.push(0);
        assert_eq!(TenantState::decode(&bytes), None);
        bytes.truncate(bytes.len() - 2);
        assert_eq!(TenantState::decode(&bytes), None);
    }

    #[test]
    fn encoded_state_stays_small() {
        let len = TenantState::default().encode().len();
        assert!(len < 700, "{len} bytes");
        let mut with_fleet = TenantState::default();
        with_fleet.fleet.in_flight = 1;
        let len = with_fleet.encode().len();
        assert!(len < 1100, "{len} bytes");
    }

    #[test]
    fn error_ratio_is_a_percentage_of_completed_responses() {
        let mut s = TenantState::default();
        assert_eq!(s.observe(Metric::ErrorRatio, 100), 0);
        s.completed.add(100, 8);
        s.errors.add(100, 3);
        assert_eq!(s.observe(Metric::ErrorRatio, 100), 37);
    }

    #[test]
    fn a_state_counted_apart_is_absorbed_count_by_count() {
        let now = 1_795_428_000;
        let mut a = TenantState { in_flight: 1, reserved_tokens: 100, ..TenantState::default() };
        a.tokens.add(now, 40);
        a.budget.add(now, 40, 3);
        let mut b = TenantState { in_flight: 2, reserved_tokens: 50, ..TenantState::default() };
        b.tokens.add(now, 2);
        b.requests.add(now, 1);
        b.budget.add(now, 2, 1);
        a.absorb(&b);
        assert_eq!((a.in_flight, a.reserved_tokens), (3, 150));
        assert_eq!((a.tokens.sum(now, 10), a.requests.sum(now, 10)), (42, 1));
        assert_eq!((a.budget.tokens_day, a.budget.cost_month_micros), (42, 4));
        let mut fresh = TenantState::default();
        fresh.absorb(&b);
        assert_eq!(fresh.budget, b.budget);
    }
}
