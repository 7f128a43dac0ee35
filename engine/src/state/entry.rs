//! A tenant state's entry in the table of states: whose state it is, until when it must be kept,
//! and the state. States live in a fixed number of buckets (see [`super::bucket`]), so Envoy's
//! memory does not grow with every tenant ever seen. The entry's holds are set by whoever last
//! updated it (who knew the tenant's limits). A state matters whole while its windows, requests
//! in flight, or an open or recently tripped breaker do. A budget spent in the current period
//! outlives that (to the end of the day or month): once only the budget matters, the
//! singleton's sweep keeps the budget alone (about 20 bytes instead of 250 to 700). Past both
//! holds the entry is free: the sweep removes it, which frees its memory, and a new name that
//! finds its bucket full may take its place.

use super::bucket::Named;
use super::codec::{take_u32, take_u64, take_u8};
use super::TenantState;
use crate::breaker::BreakerState;
use crate::budget::{seconds_to_reset, Budget, BudgetState};
use crate::policy::{Limit, Limits};

/// Buckets of the state table: a fixed 128 Ki keys in shared data (about 18 MB of Envoy's memory
/// once every one has been written, whatever is in them).
pub const BUCKETS: u64 = 1 << 17;
/// States one bucket holds at most: the table holds about four million states, and with a
/// million states at once (eight a bucket on average) a bucket is full about once in 10^9.
pub const PER_BUCKET: usize = 32;
/// A state is held this long after its last update: the longest window (60 s) and a margin.
pub const IDLE_AFTER_MS: u64 = 65_000;

/// The bucket of a state's name (a tenant id, `tenant#tier`, a scope value or a model pattern).
pub fn bucket(name: &str) -> u64 {
    super::bucket::bucket_of(name, BUCKETS)
}

/// Until when a state matters: whole, and by its budget alone (0: no budget running).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    pub whole_until_ms: u64,
    pub budget_until_ms: u64,
}

/// One state of the table: whose it is, until when it is held, and the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateEntry {
    /// The state's name.
    pub owner: String,
    pub holds: Holds,
    pub state: TenantState,
}

/// Not the tenant state's magic byte, so a bare state never reads as an entry.
const FORMAT: u8 = b'S';
/// An entry holding a budget alone (its hold in seconds, the budget in varints).
const FORMAT_BUDGET: u8 = b'B';

impl StateEntry {
    /// A new entry for `owner`, with a fresh state.
    pub fn claimed(owner: &str) -> StateEntry {
        StateEntry { owner: owner.to_string(), holds: Holds::default(), state: TenantState::default() }
    }

    /// Whether the entry may be removed at `now_ms` (it no longer matters).
    pub fn is_free(&self, now_ms: u64) -> bool {
        now_ms > self.holds.whole_until_ms.max(self.holds.budget_until_ms)
    }

    /// Whether only the budget still matters at `now_ms` and the entry holds more than that.
    pub fn can_compact(&self, now_ms: u64) -> bool {
        !self.is_free(now_ms) && now_ms > self.holds.whole_until_ms && !self.is_budget_only()
    }

    /// Keeps the budget alone: the rest no longer matters (windows drained, nothing in flight,
    /// no breaker to remember), so a state read back from it judges the same.
    pub fn compact(&mut self) {
        self.state = TenantState { budget: self.state.budget, ..TenantState::default() };
    }

    fn is_budget_only(&self) -> bool {
        self.state == TenantState { budget: self.state.budget, ..TenantState::default() }
    }
}

impl Named for StateEntry {
    fn name(&self) -> &str {
        &self.owner
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        if self.is_budget_only() {
            // Only the budget's hold matters (the whole one is over), in seconds: it is a
            // period's end.
            out.push(FORMAT_BUDGET);
            let until_s = u32::try_from(self.holds.budget_until_ms.div_ceil(1000)).unwrap_or(u32::MAX);
            out.extend_from_slice(&until_s.to_le_bytes());
            self.state.budget.encode_compact(out);
            return;
        }
        out.push(FORMAT);
        out.extend_from_slice(&self.holds.whole_until_ms.to_le_bytes());
        out.extend_from_slice(&self.holds.budget_until_ms.to_le_bytes());
        self.state.encode_into(out);
    }

    fn decode_body(name: &str, body: &[u8]) -> Option<StateEntry> {
        let mut input = body;
        let (holds, state) = match take_u8(&mut input)? {
            FORMAT_BUDGET => {
                let budget_until_ms = u64::from(take_u32(&mut input)?).saturating_mul(1000);
                let budget = BudgetState::decode_compact(&mut input)?;
                if !input.is_empty() {
                    return None;
                }
                (Holds { whole_until_ms: 0, budget_until_ms }, TenantState { budget, ..TenantState::default() })
            }
            FORMAT => {
                let holds = Holds { whole_until_ms: take_u64(&mut input)?, budget_until_ms: take_u64(&mut input)? };
                (holds, TenantState::decode(input)?)
            }
            _ => return None,
        };
        Some(StateEntry { owner: name.to_string(), holds, state })
    }
}

/// Until when `state` matters, judged at `now_ms` under the tenant's `limits`.
pub fn holds(state: &TenantState, limits: &Limits, now_ms: u64) -> Holds {
    let now_s = now_ms / 1000;
    let mut budget_until_ms = 0;
    for budget in [Budget::TokensDay, Budget::CostMonth] {
        // A shadowed budget is kept too: flipping it to enforce must find what was spent.
        let limited = limits.has_budget(budget) || limits.shadow.contains(Limit::of_budget(budget));
        if limited && state.budget.used(budget, now_s) > 0 {
            let reset_ms = now_s.saturating_add(seconds_to_reset(budget, now_s)).saturating_mul(1000);
            budget_until_ms = budget_until_ms.max(reset_ms);
        }
    }
    if state.in_flight > 0 || state.reserved_tokens > 0 {
        // Until its requests end (their settlement judges again).
        return Holds { whole_until_ms: u64::MAX, budget_until_ms };
    }
    let mut until = now_ms.saturating_add(IDLE_AFTER_MS);
    let b = &state.breaker;
    match b.state {
        BreakerState::Open { until_ms } => until = until.max(until_ms.saturating_add(IDLE_AFTER_MS)),
        BreakerState::HalfOpen { .. } | BreakerState::Closed => {}
    }
    if b.last_trip_ms > 0 {
        // A trip soon after doubles the cooldown: remember this one as long as it counts.
        let doubling_ms = u64::from(limits.breaker.max_cooldown_s).saturating_mul(2000);
        until = until.max(b.last_trip_ms.saturating_add(doubling_ms));
    }
    Holds { whole_until_ms: until, budget_until_ms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::Breaker;

    // 2026-11-23T10:00:00Z
    const NOW_MS: u64 = 1_795_428_000_000;

    fn whole(state: &TenantState, limits: &Limits) -> u64 {
        holds(state, limits, NOW_MS).whole_until_ms
    }

    #[test]
    fn an_idle_state_is_held_for_the_longest_window_only() {
        let s = TenantState::default();
        assert_eq!(
            holds(&s, &Limits::unlimited(), NOW_MS),
            Holds { whole_until_ms: NOW_MS + IDLE_AFTER_MS, budget_until_ms: 0 }
        );
    }

    #[test]
    fn requests_in_flight_hold_a_state_until_they_end() {
        let s = TenantState { in_flight: 1, ..TenantState::default() };
        assert_eq!(whole(&s, &Limits::unlimited()), u64::MAX);
        let reserved = TenantState { reserved_tokens: 10, ..TenantState::default() };
        assert_eq!(whole(&reserved, &Limits::unlimited()), u64::MAX);
    }

    #[test]
    fn an_open_breaker_and_a_recent_trip_are_remembered() {
        let open = Breaker { state: BreakerState::Open { until_ms: NOW_MS + 600_000 }, ..Breaker::default() };
        let mut s = TenantState { breaker: open, ..TenantState::default() };
        assert_eq!(whole(&s, &Limits::unlimited()), NOW_MS + 600_000 + IDLE_AFTER_MS);
        s.breaker = Breaker { last_trip_ms: NOW_MS, ..Breaker::default() };
        let l = Limits::unlimited();
        assert_eq!(whole(&s, &l), NOW_MS + u64::from(l.breaker.max_cooldown_s) * 2000);
    }

    #[test]
    fn a_budget_spent_this_period_is_held_until_the_period_ends_but_only_where_it_is_a_limit() {
        let mut s = TenantState::default();
        s.budget.add(NOW_MS / 1000, 500, 0);
        assert_eq!(holds(&s, &Limits::unlimited(), NOW_MS).budget_until_ms, 0, "no budget: not held");
        let l = Limits { budget_tokens_day: Some(10_000), ..Limits::unlimited() };
        let h = holds(&s, &l, NOW_MS);
        assert_eq!(
            h,
            Holds { whole_until_ms: NOW_MS + IDLE_AFTER_MS, budget_until_ms: 1_795_478_400_000 },
            "the next UTC midnight"
        );
    }

    fn encoded(entry: &StateEntry) -> Vec<u8> {
        let mut out = Vec::new();
        entry.encode_body(&mut out);
        out
    }

    #[test]
    fn once_only_its_budget_matters_an_entry_keeps_the_budget_alone_in_a_few_bytes() {
        let mut slot = StateEntry::claimed("acme");
        slot.state.tokens.add(NOW_MS / 1000, 500);
        slot.state.budget.add(NOW_MS / 1000, 500, 7);
        slot.holds = Holds { whole_until_ms: NOW_MS, budget_until_ms: NOW_MS + 1_000 };
        assert!(!slot.can_compact(NOW_MS), "the whole state still matters");
        assert!(slot.can_compact(NOW_MS + 1));
        let full = encoded(&slot).len();
        slot.compact();
        assert!(!slot.can_compact(NOW_MS + 1), "once is enough");
        let bytes = encoded(&slot);
        assert!(bytes.len() <= 20 && full > 200, "{} bytes, from {full}", bytes.len());
        let back = StateEntry::decode_body("acme", &bytes).unwrap();
        assert_eq!((back.state.budget, back.state.tokens.is_empty()), (slot.state.budget, true));
        assert!(!back.is_free(NOW_MS + 1_000) && back.is_free(NOW_MS + 1_001));
        assert_eq!(back.holds, Holds { whole_until_ms: 0, budget_until_ms: NOW_MS + 1_000 }, "the whole hold is over");
    }

    #[test]
    fn an_entry_is_free_past_its_holds() {
        let mut slot = StateEntry::claimed("acme");
        slot.holds.whole_until_ms = NOW_MS;
        assert!(!slot.is_free(NOW_MS) && slot.is_free(NOW_MS + 1));
    }

    #[test]
    fn entries_round_trip_and_garbage_does_not_decode() {
        let mut slot = StateEntry::claimed("acme#batch");
        slot.holds.whole_until_ms = NOW_MS;
        slot.state.tokens.add(NOW_MS / 1000, 42);
        assert_eq!(StateEntry::decode_body("acme#batch", &encoded(&slot)), Some(slot.clone()));
        assert_eq!(StateEntry::decode_body("acme", b""), None);
        assert_eq!(StateEntry::decode_body("acme", &slot.state.encode()), None, "a bare tenant state is not an entry");
    }
}
