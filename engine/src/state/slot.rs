//! Tenant states live in a bounded table of slots, so Envoy's memory does not grow with every
//! tenant ever seen. Envoy's shared data cannot delete a key: a key per tenant would leak one
//! entry per tenant forever. Instead a state sits in one of [`PROBES`] slots from its name's
//! hash in a table of [`SLOTS`]; the slot records whose it is and until when it must be kept
//! (`hold_until_ms`, set by whoever last updated it, who knew the tenant's limits). A slot past
//! its hold is free: a new tenant may take it, and the singleton's sweep empties it, which frees
//! its memory. A tenant's state is held while any of it still matters: its windows, requests in
//! flight, an open or recently tripped breaker, a budget it has spent in the current period.

use super::codec::{take_u64, take_u8};
use super::TenantState;
use crate::breaker::BreakerState;
use crate::budget::{seconds_to_reset, Budget};
use crate::policy::Limits;

/// Slots in the table: the most tenant states one Envoy holds at once.
pub const SLOTS: u64 = 1 << 20;
/// Slots a name may occupy, in probing order.
pub const PROBES: u64 = 8;
/// A state is held this long after its last update: the longest window (60 s) and a margin.
pub const IDLE_AFTER_MS: u64 = 65_000;

/// The slots `id` may occupy in a table of `table` slots, in probing order (FNV-1a of the id).
pub fn probes(id: &str, table: u64, count: u64) -> impl Iterator<Item = u64> {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    (0..count).map(move |i| hash.wrapping_add(i) % table.max(1))
}

/// The slots of a state's name (a tenant id, or `tenant#tier`).
pub fn slots(name: &str) -> impl Iterator<Item = u64> {
    probes(name, SLOTS, PROBES)
}

/// One slot of the table: whose state it holds, until when, and the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// The state's name; empty when the slot is free.
    pub owner: String,
    pub hold_until_ms: u64,
    pub state: TenantState,
}

/// Not the tenant state's magic byte, so a bare state (how states were kept before slots) never reads as a slot.
const FORMAT: u8 = b'S';

impl Slot {
    /// A new slot for `owner`, with a fresh state.
    pub fn claimed(owner: &str) -> Slot {
        Slot { owner: owner.to_string(), hold_until_ms: 0, state: TenantState::default() }
    }

    pub fn is_owned_by(&self, name: &str) -> bool {
        !self.owner.is_empty() && self.owner == name
    }

    /// Whether another state may take this slot at `now_ms`.
    pub fn is_free(&self, now_ms: u64) -> bool {
        self.owner.is_empty() || now_ms > self.hold_until_ms
    }

    /// Empty: nothing held (an empty value in shared data also reads as this).
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let owner = self.owner.as_bytes().get(..self.owner.len().min(255)).unwrap_or(&[]);
        let state = self.state.encode();
        let mut out = Vec::with_capacity(10 + owner.len() + state.len());
        out.push(FORMAT);
        out.push(u8::try_from(owner.len()).unwrap_or(0));
        out.extend_from_slice(owner);
        out.extend_from_slice(&self.hold_until_ms.to_le_bytes());
        out.extend_from_slice(&state);
        out
    }

    /// `None` for anything [`Slot::encode`] did not write (an empty value reads as an empty slot
    /// in the store, before it gets here).
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let mut input = bytes;
        if take_u8(&mut input)? != FORMAT {
            return None;
        }
        let len = usize::from(take_u8(&mut input)?);
        let owner = std::str::from_utf8(input.get(..len)?).ok()?.to_string();
        input = input.get(len..)?;
        let hold_until_ms = take_u64(&mut input)?;
        let state = TenantState::decode(input)?;
        Some(Slot { owner, hold_until_ms, state })
    }
}

/// Until when `state` must be kept, judged at `now_ms` under the tenant's `limits`.
pub fn hold_until(state: &TenantState, limits: &Limits, now_ms: u64) -> u64 {
    if state.in_flight > 0 || state.reserved_tokens > 0 {
        return u64::MAX; // until its requests end (their settlement judges again)
    }
    let now_s = now_ms / 1000;
    let mut until = now_ms.saturating_add(IDLE_AFTER_MS);
    let b = &state.breaker;
    match b.state {
        BreakerState::Open { until_ms } => until = until.max(until_ms.saturating_add(IDLE_AFTER_MS)),
        BreakerState::HalfOpen { .. } => until = until.max(now_ms.saturating_add(IDLE_AFTER_MS)),
        BreakerState::Closed => {}
    }
    if b.last_trip_ms > 0 {
        // A trip soon after doubles the cooldown: remember this one as long as it counts.
        let doubling_ms = u64::from(limits.breaker.max_cooldown_s).saturating_mul(2000);
        until = until.max(b.last_trip_ms.saturating_add(doubling_ms));
    }
    for budget in [Budget::TokensDay, Budget::CostMonth] {
        if limits.budget_limit(budget).is_some() && state.budget.used(budget, now_s) > 0 {
            let reset_ms = now_s.saturating_add(seconds_to_reset(budget, now_s)).saturating_mul(1000);
            until = until.max(reset_ms);
        }
    }
    until
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::Breaker;

    // 2026-11-23T10:00:00Z
    const NOW_MS: u64 = 1_795_428_000_000;

    #[test]
    fn an_idle_state_is_held_for_the_longest_window_only() {
        let s = TenantState::default();
        assert_eq!(hold_until(&s, &Limits::unlimited(), NOW_MS), NOW_MS + IDLE_AFTER_MS);
    }

    #[test]
    fn requests_in_flight_hold_a_state_until_they_end() {
        let s = TenantState { in_flight: 1, ..TenantState::default() };
        assert_eq!(hold_until(&s, &Limits::unlimited(), NOW_MS), u64::MAX);
        let reserved = TenantState { reserved_tokens: 10, ..TenantState::default() };
        assert_eq!(hold_until(&reserved, &Limits::unlimited(), NOW_MS), u64::MAX);
    }

    #[test]
    fn an_open_breaker_and_a_recent_trip_are_remembered() {
        let open = Breaker { state: BreakerState::Open { until_ms: NOW_MS + 600_000 }, ..Breaker::default() };
        let mut s = TenantState { breaker: open, ..TenantState::default() };
        assert_eq!(hold_until(&s, &Limits::unlimited(), NOW_MS), NOW_MS + 600_000 + IDLE_AFTER_MS);
        s.breaker = Breaker { last_trip_ms: NOW_MS, ..Breaker::default() };
        let l = Limits::unlimited();
        assert_eq!(hold_until(&s, &l, NOW_MS), NOW_MS + u64::from(l.breaker.max_cooldown_s) * 2000);
    }

    #[test]
    fn a_budget_spent_this_period_is_held_until_the_period_ends_but_only_where_it_is_a_limit() {
        let mut s = TenantState::default();
        s.budget.add(NOW_MS / 1000, 500, 0);
        assert_eq!(hold_until(&s, &Limits::unlimited(), NOW_MS), NOW_MS + IDLE_AFTER_MS, "no budget: not held");
        let l = Limits { budget_tokens_day: Some(10_000), ..Limits::unlimited() };
        assert_eq!(hold_until(&s, &l, NOW_MS), 1_795_478_400_000, "the next UTC midnight");
    }

    #[test]
    fn a_slot_is_free_when_empty_or_past_its_hold_and_owned_only_by_its_name() {
        let mut slot = Slot::claimed("acme");
        slot.hold_until_ms = NOW_MS;
        assert!(slot.is_owned_by("acme") && !slot.is_owned_by("acme#batch"));
        assert!(!slot.is_free(NOW_MS) && slot.is_free(NOW_MS + 1));
        assert!(Slot::default().is_free(0) && !Slot::default().is_owned_by(""));
    }

    #[test]
    fn slots_round_trip_and_garbage_does_not_decode() {
        let mut slot = Slot::claimed("acme#batch");
        slot.hold_until_ms = NOW_MS;
        slot.state.tokens.add(NOW_MS / 1000, 42);
        assert_eq!(Slot::decode(&slot.encode()), Some(slot.clone()));
        assert_eq!(Slot::decode(b""), None);
        assert_eq!(Slot::decode(&slot.state.encode()), None, "a bare tenant state is not a slot");
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
