//! Per-tenant state as it lives in Envoy shared data: usage windows plus the breaker,
//! in one compact binary value so one read and one compare-and-swap cover a request.

use super::outputs::RecentOutputs;
use crate::breaker::{Breaker, BreakerState, Trip};
use crate::budget::BudgetState;
use crate::metric::Metric;
use crate::state::codec::{take_u32, take_u64, take_u8};
use crate::state::window::{Ring, SecondRing};

const MAGIC: u8 = b'F';
/// Format 6 added the recent outputs at the end; a format 5 value (written by the previous
/// release, still in shared data across a plugin reload) reads with none remembered.
const FORMAT: u8 = 6;
const FORMAT_WITHOUT_OUTPUTS: u8 = 5;

/// Five-second buckets over a minute: enough for counts that need no exact `retry-after`.
pub type MinuteRing = Ring<12, 5>;

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
}

impl TenantState {
    /// Current value of a metric at `now_s` (error ratio in percent of completed responses).
    pub fn observe(&self, metric: Metric, now_s: u64) -> u64 {
        let w = metric.window_s();
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => self.tokens.sum(now_s, w),
            Metric::Requests10s => self.requests.sum(now_s, w),
            Metric::ToolCalls60s => self.tool_calls.sum(now_s, w),
            Metric::ErrorRatio => {
                self.errors.sum(now_s, w).saturating_mul(100).checked_div(self.completed.sum(now_s, w)).unwrap_or(0)
            }
            Metric::Concurrency => u64::from(self.in_flight),
        }
    }

    /// Completed responses in the error-ratio window.
    pub fn completed_in_window(&self, now_s: u64) -> u64 {
        self.completed.sum(now_s, Metric::ErrorRatio.window_s())
    }

    /// Seconds until a windowed `metric` is at or below `target`, if nothing more arrives
    /// (0 for metrics that do not drain with time).
    pub fn drain_s(&self, metric: Metric, now_s: u64, target: u64) -> u64 {
        let w = metric.window_s();
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => self.tokens.seconds_until_at_most(now_s, w, target),
            Metric::Requests10s => self.requests.seconds_until_at_most(now_s, w, target),
            Metric::ToolCalls60s => self.tool_calls.seconds_until_at_most(now_s, w, target),
            Metric::ErrorRatio | Metric::Concurrency => 0,
        }
    }

    pub fn advance(&mut self, now_s: u64) {
        self.tokens.advance(now_s);
        self.requests.advance(now_s);
        self.tool_calls.advance(now_s);
        self.completed.advance(now_s);
        self.errors.advance(now_s);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            96 + RecentOutputs::ENCODED_LEN
                + SecondRing::<60>::ENCODED_LEN
                + SecondRing::<10>::ENCODED_LEN
                + 3 * MinuteRing::ENCODED_LEN,
        );
        out.push(MAGIC);
        out.push(FORMAT);
        self.tokens.encode(&mut out);
        self.requests.encode(&mut out);
        self.tool_calls.encode(&mut out);
        self.completed.encode(&mut out);
        self.errors.encode(&mut out);
        out.extend_from_slice(&self.in_flight.to_le_bytes());
        out.extend_from_slice(&self.reserved_tokens.to_le_bytes());
        let b = &self.budget;
        out.extend_from_slice(&b.day.to_le_bytes());
        out.extend_from_slice(&b.tokens_day.to_le_bytes());
        out.extend_from_slice(&b.month.to_le_bytes());
        out.extend_from_slice(&b.cost_month_micros.to_le_bytes());
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
        self.outputs.encode(&mut out);
        out
    }

    /// Decodes a value written by [`TenantState::encode`]; `None` for anything else
    /// (an empty value, a future format, corruption).
    pub fn decode(bytes: &[u8]) -> Option<TenantState> {
        let mut input = bytes;
        if take_u8(&mut input)? != MAGIC {
            return None;
        }
        let format = take_u8(&mut input)?;
        if format != FORMAT && format != FORMAT_WITHOUT_OUTPUTS {
            return None;
        }
        let tokens = SecondRing::decode(&mut input)?;
        let requests = SecondRing::decode(&mut input)?;
        let tool_calls = MinuteRing::decode(&mut input)?;
        let completed = MinuteRing::decode(&mut input)?;
        let errors = MinuteRing::decode(&mut input)?;
        let in_flight = take_u32(&mut input)?;
        let reserved_tokens = take_u64(&mut input)?;
        let budget = BudgetState {
            day: take_u32(&mut input)?,
            tokens_day: take_u64(&mut input)?,
            month: take_u32(&mut input)?,
            cost_month_micros: take_u64(&mut input)?,
        };
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
        let outputs = if format == FORMAT { RecentOutputs::decode(&mut input)? } else { RecentOutputs::default() };
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
        assert_eq!(TenantState::decode(&s.encode()), Some(s));
    }

    #[test]
    fn a_state_written_by_the_previous_format_reads_with_no_outputs_remembered() {
        let mut s = TenantState::default();
        s.tokens.add(1_700_000_000, 42);
        s.outputs.record(900);
        let mut old = s.encode();
        old.truncate(old.len() - RecentOutputs::ENCODED_LEN);
        old[1] = FORMAT_WITHOUT_OUTPUTS;
        let read = TenantState::decode(&old).expect("format 5 still reads");
        assert_eq!(read.tokens, s.tokens);
        assert_eq!(read.outputs.estimate(), None);
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
    }

    #[test]
    fn error_ratio_is_a_percentage_of_completed_responses() {
        let mut s = TenantState::default();
        assert_eq!(s.observe(Metric::ErrorRatio, 100), 0);
        s.completed.add(100, 8);
        s.errors.add(100, 3);
        assert_eq!(s.observe(Metric::ErrorRatio, 100), 37);
    }
}
