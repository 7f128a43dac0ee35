//! Tenant states live in a bounded table of slots, so Envoy's memory does not grow with every
//! tenant ever seen. Envoy's shared data cannot delete a key: a key per tenant would leak one
//! entry per tenant forever. Instead a state sits in one of [`PROBES`] slots from its name's
//! hash in a table of [`SLOTS`]; the slot records whose it is and until when it must be kept,
//! set by whoever last updated it (who knew the tenant's limits). A state matters whole while
//! its windows, requests in flight, or an open or recently tripped breaker do. A budget spent in
//! the current period outlives that (to the end of the day or month): once only the budget
//! matters, the singleton's sweep rewrites the slot as the budget alone (about 60 bytes instead
//! of about 700). Past both holds the slot is free: a new tenant may take it, and the sweep
//! empties it, which frees its memory.

use super::codec::{take_u64, take_u8};
use super::TenantState;
use crate::breaker::BreakerState;
use crate::budget::{seconds_to_reset, Budget, BudgetState};
use crate::policy::{Limit, Limits};

/// Slots in the table: the most tenant states one Envoy holds at once. Two million, because a
/// tenant that spent a budget keeps a (small) slot to the end of the day or month: a day of a
/// million such tenants fills half the table.
pub const SLOTS: u64 = 1 << 21;
/// Slots a name may occupy, in probing order: with the table 60 % full, a new name finds all of
/// them taken about 3 times in 10 000.
pub const PROBES: u64 = 16;
/// A state is held this long after its last update: the longest window (60 s) and a margin.
pub const IDLE_AFTER_MS: u64 = 65_000;

/// The slots `id` may occupy in a table of `table` slots (a power of two), in probing order:
/// FNV-1a of the id, then strides of an odd step taken from the hash's high half. Strides rather
/// than neighbours: with neighbours, runs of taken slots grow into each other and a million
/// tenants in a two-million-slot table saw 153 refused; with strides about 15 are expected
/// (0.5^16 of a million).
pub fn probes(id: &str, table: u64, count: u64) -> impl Iterator<Item = u64> {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let step = (hash >> 32) | 1;
    (0..count).map(move |i| hash.wrapping_add(i.wrapping_mul(step)) % table.max(1))
}

/// The slots of a state's name (a tenant id, or `tenant#tier`).
pub fn slots(name: &str) -> impl Iterator<Item = u64> {
    probes(name, SLOTS, PROBES)
}

/// Until when a state matters: whole, and by its budget alone (0: no budget running).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds {
    pub whole_until_ms: u64,
    pub budget_until_ms: u64,
}

/// One slot of the table: whose state it holds, until when, and the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// The state's name; empty when the slot is free.
    pub owner: String,
    pub holds: Holds,
    pub state: TenantState,
}

/// Not the tenant state's magic byte, so a bare state (how states were kept before slots) never
/// reads as a slot.
const FORMAT: u8 = b'S';
/// A slot holding a budget alone.
const FORMAT_BUDGET: u8 = b'B';

impl Slot {
    /// A new slot for `owner`, with a fresh state.
    pub fn claimed(owner: &str) -> Slot {
        Slot { owner: owner.to_string(), holds: Holds::default(), state: TenantState::default() }
    }

    pub fn is_owned_by(&self, name: &str) -> bool {
        !self.owner.is_empty() && self.owner == name
    }

    /// Whether another state may take this slot at `now_ms`.
    pub fn is_free(&self, now_ms: u64) -> bool {
        self.owner.is_empty() || now_ms > self.holds.whole_until_ms.max(self.holds.budget_until_ms)
    }

    /// Empty: nothing held (an empty value in shared data also reads as this).
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// Whether only the budget still matters at `now_ms` and the slot holds more than that.
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

    pub fn encode(&self) -> Vec<u8> {
        let owner = self.owner.as_bytes().get(..self.owner.len().min(255)).unwrap_or(&[]);
        let budget_only = self.is_budget_only();
        let state = if budget_only { Vec::new() } else { self.state.encode() };
        let mut out = Vec::with_capacity(18 + owner.len() + state.len() + BudgetState::ENCODED_LEN);
        out.push(if budget_only { FORMAT_BUDGET } else { FORMAT });
        out.push(u8::try_from(owner.len()).unwrap_or(0));
        out.extend_from_slice(owner);
        out.extend_from_slice(&self.holds.whole_until_ms.to_le_bytes());
        out.extend_from_slice(&self.holds.budget_until_ms.to_le_bytes());
        if budget_only {
            self.state.budget.encode(&mut out);
        } else {
            out.extend_from_slice(&state);
        }
        out
    }

    /// `None` for anything [`Slot::encode`] did not write (an empty value reads as an empty slot
    /// in the store, before it gets here).
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let mut input = bytes;
        let format = take_u8(&mut input)?;
        if format != FORMAT && format != FORMAT_BUDGET {
            return None;
        }
        let len = usize::from(take_u8(&mut input)?);
        let owner = std::str::from_utf8(input.get(..len)?).ok()?.to_string();
        input = input.get(len..)?;
        let holds = Holds { whole_until_ms: take_u64(&mut input)?, budget_until_ms: take_u64(&mut input)? };
        let state = if format == FORMAT_BUDGET {
            let budget = BudgetState::decode(&mut input)?;
            input.is_empty().then_some(TenantState { budget, ..TenantState::default() })?
        } else {
            TenantState::decode(input)?
        };
        Some(Slot { owner, holds, state })
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

    #[test]
    fn once_only_its_budget_matters_a_slot_keeps_the_budget_alone_in_a_few_bytes() {
        let mut slot = Slot::claimed("acme");
        slot.state.tokens.add(NOW_MS / 1000, 500);
        slot.state.budget.add(NOW_MS / 1000, 500, 7);
        slot.holds = Holds { whole_until_ms: NOW_MS, budget_until_ms: NOW_MS + 1_000 };
        assert!(!slot.can_compact(NOW_MS), "the whole state still matters");
        assert!(slot.can_compact(NOW_MS + 1));
        let full = slot.encode().len();
        slot.compact();
        assert!(!slot.can_compact(NOW_MS + 1), "once is enough");
        let bytes = slot.encode();
        assert!(bytes.len() < 60 && full > 500, "{} bytes, from {full}", bytes.len());
        let back = Slot::decode(&bytes).unwrap();
        assert_eq!((back.state.budget, back.state.tokens.is_empty()), (slot.state.budget, true));
        assert!(!back.is_free(NOW_MS + 1_000) && back.is_free(NOW_MS + 1_001));
    }

    #[test]
    fn a_slot_is_free_when_empty_or_past_its_hold_and_owned_only_by_its_name() {
        let mut slot = Slot::claimed("acme");
        slot.holds.whole_until_ms = NOW_MS;
        assert!(slot.is_owned_by("acme") && !slot.is_owned_by("acme#batch"));
        assert!(!slot.is_free(NOW_MS) && slot.is_free(NOW_MS + 1));
        assert!(Slot::default().is_free(0) && !Slot::default().is_owned_by(""));
    }

    #[test]
    fn slots_round_trip_and_garbage_does_not_decode() {
        let mut slot = Slot::claimed("acme#batch");
        slot.holds.whole_until_ms = NOW_MS;
        slot.state.tokens.add(NOW_MS / 1000, 42);
        assert_eq!(Slot::decode(&slot.encode()), Some(slot.clone()));
        assert_eq!(Slot::decode(b""), None);
        assert_eq!(Slot::decode(&slot.state.encode()), None, "a bare tenant state is not a slot");
    }

    #[test]
    fn the_probes_of_a_name_are_distinct_slots() {
        for name in ["acme", "globex", "t-1", "t-2"] {
            let mut all: Vec<u64> = slots(name).collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len() as u64, PROBES, "{name}");
        }
    }

    #[test]
    fn probes_are_few_fixed_and_within_the_table() {
        let a: Vec<u64> = slots("acme").collect();
        assert_eq!(a.len() as u64, PROBES);
        assert!(a.iter().all(|s| *s < SLOTS));
        assert_eq!(a, slots("acme").collect::<Vec<_>>());
        assert_ne!(a[0], slots("globex").next().unwrap());
    }
}
