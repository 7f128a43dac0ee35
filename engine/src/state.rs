//! Per-tenant state as it lives in Envoy shared data: usage windows plus the breaker,
//! in one compact binary value so one read and one compare-and-swap cover a request.

use crate::breaker::{Breaker, BreakerState, Trip};
use crate::metric::Metric;
use crate::window::SecondRing;

const MAGIC: u8 = b'F';
const FORMAT: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantState {
    /// Tokens per second over the last 60 s (serves the 10 s and 60 s windows).
    pub tokens: SecondRing<60>,
    /// Admitted requests per second over the last 10 s.
    pub requests: SecondRing<10>,
    pub breaker: Breaker,
}

impl TenantState {
    /// Current value of a metric at `now_s`.
    pub fn observe(&self, metric: Metric, now_s: u64) -> u64 {
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => self.tokens.sum(now_s, metric.window_s()),
            Metric::Requests10s => self.requests.sum(now_s, metric.window_s()),
        }
    }

    /// Seconds until `metric` is at or below `target`, if nothing more arrives.
    pub fn drain_s(&self, metric: Metric, now_s: u64, target: u64) -> u64 {
        match metric {
            Metric::Tokens10s | Metric::Tokens60s => {
                self.tokens.seconds_until_at_most(now_s, metric.window_s(), target)
            }
            Metric::Requests10s => self.requests.seconds_until_at_most(now_s, metric.window_s(), target),
        }
    }

    pub fn advance(&mut self, now_s: u64) {
        self.tokens.advance(now_s);
        self.requests.advance(now_s);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + SecondRing::<60>::ENCODED_LEN + SecondRing::<10>::ENCODED_LEN);
        out.push(MAGIC);
        out.push(FORMAT);
        self.tokens.encode(&mut out);
        self.requests.encode(&mut out);
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
        out
    }

    /// Decodes a value written by [`TenantState::encode`]; `None` for anything else
    /// (an empty value, a future format, corruption).
    pub fn decode(bytes: &[u8]) -> Option<TenantState> {
        let mut input = bytes;
        if take_u8(&mut input)? != MAGIC || take_u8(&mut input)? != FORMAT {
            return None;
        }
        let tokens = SecondRing::decode(&mut input)?;
        let requests = SecondRing::decode(&mut input)?;
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
        if !input.is_empty() {
            return None;
        }
        Some(TenantState { tokens, requests, breaker: Breaker { state, streak, last_trip_ms, last_trip } })
    }
}

fn take<const L: usize>(input: &mut &[u8]) -> Option<[u8; L]> {
    let (head, rest) = input.split_first_chunk::<L>()?;
    *input = rest;
    Some(*head)
}

pub(crate) fn take_u8(input: &mut &[u8]) -> Option<u8> {
    take::<1>(input).map(|[b]| b)
}

pub(crate) fn take_u32(input: &mut &[u8]) -> Option<u32> {
    take::<4>(input).map(u32::from_le_bytes)
}

pub(crate) fn take_u64(input: &mut &[u8]) -> Option<u64> {
    take::<8>(input).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_bytes() {
        let mut s = TenantState::default();
        s.tokens.add(1_700_000_000, 1234);
        s.requests.add(1_700_000_000, 3);
        s.breaker = Breaker {
            state: BreakerState::HalfOpen { admitted: 2, succeeded: 1 },
            streak: 3,
            last_trip_ms: 1_699_999_999_000,
            last_trip: Some(Trip { metric: Metric::Tokens60s, threshold: 60_000, observed: 61_234 }),
        };
        assert_eq!(TenantState::decode(&s.encode()), Some(s));
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
        assert!(TenantState::default().encode().len() < 400);
    }
}
