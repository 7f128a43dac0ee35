//! One Envoy's usage of one state key, or the sum of several Envoys': what a fleet sync carries.

use crate::budget::{day_of, month_of, Budget, BudgetState};
use crate::state::codec::{take_u32, take_u64};
use crate::state::window::{MinuteRing, SecondRing};

/// Requests in flight and their reservations count this long after the sync that reported
/// them; an Envoy that stops syncing (killed, partitioned) stops holding its slots after it.
pub const GAUGE_TTL_MS: u64 = 3_000;
/// An Envoy's windows are kept this long after its last sync (the longest window, 60 s, plus
/// a margin); after that only a budget still running keeps its entry.
pub const RETAIN_WINDOWS_MS: u64 = 70_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetUsage {
    /// Tokens per second (the 10 s and 60 s windows).
    pub tokens: SecondRing<60>,
    /// Admitted requests per second.
    pub requests: SecondRing<10>,
    pub tool_calls: MinuteRing,
    pub in_flight: u32,
    pub reserved_tokens: u64,
    pub budget: BudgetState,
    /// When the gauges were true (unix ms, on the clock of whoever stamped them).
    pub as_of_ms: u64,
}

impl FleetUsage {
    /// Byte length of [`FleetUsage::encode`].
    pub const ENCODED_LEN: usize = SecondRing::<60>::ENCODED_LEN
        + SecondRing::<10>::ENCODED_LEN
        + MinuteRing::ENCODED_LEN
        + 4
        + 8
        + BudgetState::ENCODED_LEN
        + 8;

    /// Whether the in-flight gauges still count at `now_ms`.
    pub fn gauges_fresh(&self, now_ms: u64) -> bool {
        now_ms <= self.as_of_ms.saturating_add(GAUGE_TTL_MS)
    }

    pub fn in_flight_at(&self, now_ms: u64) -> u32 {
        if self.gauges_fresh(now_ms) {
            self.in_flight
        } else {
            0
        }
    }

    pub fn reserved_at(&self, now_ms: u64) -> u64 {
        if self.gauges_fresh(now_ms) {
            self.reserved_tokens
        } else {
            0
        }
    }

    /// Adds `other` into this sum as of `now_ms`: windows bucket by bucket, budgets of the
    /// current day and month, gauges only while fresh. The sum's gauges are stamped `now_ms`.
    pub fn add(&mut self, other: &FleetUsage, now_ms: u64) {
        let now_s = now_ms / 1000;
        self.tokens.merge(&other.tokens);
        self.requests.merge(&other.requests);
        self.tool_calls.merge(&other.tool_calls);
        self.in_flight = self.in_flight_at(now_ms).saturating_add(other.in_flight_at(now_ms));
        self.reserved_tokens = self.reserved_at(now_ms).saturating_add(other.reserved_at(now_ms));
        let (tokens_day, cost) = (
            self.budget.used(Budget::TokensDay, now_s).saturating_add(other.budget.used(Budget::TokensDay, now_s)),
            self.budget.used(Budget::CostMonth, now_s).saturating_add(other.budget.used(Budget::CostMonth, now_s)),
        );
        self.budget = BudgetState { day: day_of(now_s), tokens_day, month: month_of(now_s), cost_month_micros: cost };
        self.as_of_ms = now_ms;
    }

    /// Whether an entry last synced at `as_of_ms` still matters at `now_ms`: its windows for
    /// [`RETAIN_WINDOWS_MS`], its budgets until their day or month is over.
    pub fn retained(&self, now_ms: u64) -> bool {
        let now_s = now_ms / 1000;
        now_ms <= self.as_of_ms.saturating_add(RETAIN_WINDOWS_MS)
            || self.budget.used(Budget::TokensDay, now_s) > 0
            || self.budget.used(Budget::CostMonth, now_s) > 0
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.tokens.encode(out);
        self.requests.encode(out);
        self.tool_calls.encode(out);
        out.extend_from_slice(&self.in_flight.to_le_bytes());
        out.extend_from_slice(&self.reserved_tokens.to_le_bytes());
        self.budget.encode(out);
        out.extend_from_slice(&self.as_of_ms.to_le_bytes());
    }

    pub(crate) fn decode(input: &mut &[u8]) -> Option<FleetUsage> {
        Some(FleetUsage {
            tokens: SecondRing::decode(input)?,
            requests: SecondRing::decode(input)?,
            tool_calls: MinuteRing::decode(input)?,
            in_flight: take_u32(input)?,
            reserved_tokens: take_u64(input)?,
            budget: BudgetState::decode(input)?,
            as_of_ms: take_u64(input)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 1_795_428_000_000;
    const T0: u64 = T0_MS / 1000;

    fn node(tokens: u64, in_flight: u32, as_of_ms: u64) -> FleetUsage {
        let mut u =
            FleetUsage { in_flight, reserved_tokens: u64::from(in_flight) * 100, as_of_ms, ..Default::default() };
        u.tokens.add(T0, tokens);
        u.requests.add(T0, 1);
        u.budget.add(T0, tokens, 5);
        u
    }

    #[test]
    fn a_sum_adds_windows_budgets_and_fresh_gauges() {
        let mut sum = FleetUsage::default();
        sum.add(&node(100, 2, T0_MS), T0_MS);
        sum.add(&node(50, 1, T0_MS), T0_MS);
        assert_eq!(sum.tokens.sum(T0, 10), 150);
        assert_eq!(sum.requests.sum(T0, 10), 2);
        assert_eq!((sum.in_flight, sum.reserved_tokens), (3, 300));
        assert_eq!(sum.budget.used(Budget::TokensDay, T0), 150);
        assert_eq!(sum.budget.used(Budget::CostMonth, T0), 10);
    }

    #[test]
    fn the_gauges_of_an_envoy_that_stopped_syncing_expire_but_its_usage_stays() {
        let now = T0_MS + GAUGE_TTL_MS + 1;
        let mut sum = FleetUsage::default();
        sum.add(&node(100, 4, T0_MS), now);
        assert_eq!((sum.in_flight, sum.reserved_tokens), (0, 0));
        assert_eq!(sum.tokens.sum(T0 + 3, 10), 100);
        assert!(sum.gauges_fresh(now));
    }

    #[test]
    fn yesterdays_budget_does_not_count_today() {
        let mut sum = FleetUsage::default();
        sum.add(&node(100, 0, T0_MS), T0_MS + 86_400_000);
        assert_eq!(sum.budget.used(Budget::TokensDay, T0 + 86_400), 0);
    }

    #[test]
    fn an_entry_is_kept_while_its_windows_or_a_budget_still_matter() {
        let u = node(100, 0, T0_MS);
        assert!(u.retained(T0_MS + RETAIN_WINDOWS_MS));
        assert!(u.retained(T0_MS + RETAIN_WINDOWS_MS + 1), "today's budget still counts");
        let mut no_budget = u.clone();
        no_budget.budget = BudgetState::default();
        assert!(!no_budget.retained(T0_MS + RETAIN_WINDOWS_MS + 1));
    }

    #[test]
    fn usage_round_trips_through_bytes() {
        let u = node(123, 3, T0_MS);
        let mut bytes = Vec::new();
        u.encode(&mut bytes);
        assert_eq!(bytes.len(), FleetUsage::ENCODED_LEN);
        let mut input = bytes.as_slice();
        assert_eq!(FleetUsage::decode(&mut input), Some(u));
        assert!(input.is_empty());
    }
}
