//! Tenant states in shared data, in the bounded table of slots (see
//! `fusebox_engine::state::slot`): finding a state by its name, claiming a slot for a new one,
//! and the singleton's sweep that frees the slots nobody needs any more.
//!
//! Two workers may claim a slot for the same new name at once and pick different slots (one saw
//! a slot still held that the other saw free a moment later). The one whose slot comes later in
//! the probing order notices (it looks at the earlier slots after claiming) and moves what it
//! counted into the earlier slot, so every count lands on one state.

use crate::store::{self, Keys, StoreError, UpdateInfo};
use fusebox_engine::policy::Limits;
use fusebox_engine::state::slot::{self, holds, Holds, Slot};
use fusebox_engine::state::TenantState;

/// Tries at claiming a slot before giving up (each loses only to a concurrent claim).
const CLAIM_ATTEMPTS: usize = 4;

/// The name of a tenant's state on a route with a tier of its own (`#` cannot occur in a
/// tenant id, so it never collides with the tenant's own state).
pub fn route_name(tenant: &str, tier: &str) -> String {
    format!("{tenant}#{tier}")
}

/// How an update sets the slot's hold.
#[derive(Debug, Clone, Copy)]
pub enum Hold<'a> {
    /// Judged again from the tenant's limits (what requests do).
    Judge(&'a Limits),
    /// Left as it is (the fleet's usage written in by the singleton).
    Keep,
}

/// Whether an update may claim a slot for a name that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Claim,
    Skip,
}

/// What an update did, and where the state lives now (the hint for the next update).
pub struct Updated<R> {
    pub result: R,
    pub info: UpdateInfo,
    pub key: String,
    /// The slot this update claimed, if it claimed one (the singleton's sweep must hear of it).
    pub claimed: Option<u64>,
}

/// Applies `f` to the slot's state and judges its holds again (as `hold` says).
fn apply<R>(s: &mut Slot, hold: Hold<'_>, now_ms: u64, f: &mut impl FnMut(&mut TenantState) -> R) -> R {
    let r = f(&mut s.state);
    if let Hold::Judge(limits) = hold {
        s.holds = holds(&s.state, limits, now_ms);
    }
    r
}

/// Applies `f` to `name`'s state in the slot at `key`, if it holds it.
fn apply_at<R>(
    keys: &Keys,
    key: &str,
    name: &str,
    hold: Hold<'_>,
    now_ms: u64,
    f: &mut impl FnMut(&mut TenantState) -> R,
) -> Result<Option<(R, UpdateInfo)>, StoreError> {
    store::update_if(keys, key, |s: &mut Slot| s.is_owned_by(name).then(|| apply(s, hold, now_ms, f)))
}

/// Applies `f` to `name`'s state atomically, looking at `hint` first (where it was last), then
/// at its slots. A name with no state gets a slot when `missing` says so (`Ok(None)` otherwise).
pub fn update<R>(
    keys: &Keys,
    name: &str,
    hint: Option<&str>,
    missing: Missing,
    hold: Hold<'_>,
    now_ms: u64,
    mut f: impl FnMut(&mut TenantState) -> R,
) -> Result<Option<Updated<R>>, StoreError> {
    if let Some(key) = hint {
        if let Some((result, info)) = apply_at(keys, key, name, hold, now_ms, &mut f)? {
            return Ok(Some(Updated { result, info, key: key.to_string(), claimed: None }));
        }
    }
    for _ in 0..CLAIM_ATTEMPTS {
        let mut free: Option<(String, u64)> = None;
        for n in slot::slots(name) {
            let key = keys.slot(n);
            let mut is_free = false;
            let found = store::update_if(keys, &key, |s: &mut Slot| {
                if s.is_owned_by(name) {
                    Some(apply(s, hold, now_ms, &mut f))
                } else {
                    is_free = s.is_free(now_ms);
                    None
                }
            })?;
            if let Some((result, info)) = found {
                return Ok(Some(Updated { result, info, key, claimed: None }));
            }
            if is_free && free.is_none() {
                free = Some((key, n));
            }
        }
        if missing == Missing::Skip {
            return Ok(None);
        }
        let Some((key, n)) = free else { return Err(StoreError::Full) };
        let claimed = store::update_if(keys, &key, |s: &mut Slot| {
            if !s.is_owned_by(name) {
                if !s.is_free(now_ms) {
                    return None; // taken meanwhile
                }
                *s = Slot::claimed(name);
            }
            let r = f(&mut s.state);
            s.holds = match hold {
                Hold::Judge(limits) => holds(&s.state, limits, now_ms),
                Hold::Keep => holds(&s.state, &Limits::unlimited(), now_ms),
            };
            Some(r)
        })?;
        if let Some((result, info)) = claimed {
            let key = one_state(keys, name, key)?;
            return Ok(Some(Updated { result, info, key, claimed: Some(n) }));
        }
    }
    Err(StoreError::Contention)
}

/// After claiming `claimed` for `name`: if an earlier slot of `name` holds its state too (a
/// concurrent claim), moves what `claimed` holds there and frees it. Returns where the state is.
fn one_state(keys: &Keys, name: &str, claimed: String) -> Result<String, StoreError> {
    for n in slot::slots(name) {
        let key = keys.slot(n);
        if key == claimed {
            return Ok(claimed);
        }
        let earlier: Slot = store::read(&key)?;
        if !earlier.is_owned_by(name) {
            continue;
        }
        let moved = store::update_if(keys, &claimed, |s: &mut Slot| s.is_owned_by(name).then(|| std::mem::take(s)))?;
        if let Some((moved, _)) = moved {
            let kept = store::update_if(keys, &key, |s: &mut Slot| {
                s.is_owned_by(name).then(|| {
                    s.state.absorb(&moved.state);
                    s.holds = Holds {
                        whole_until_ms: s.holds.whole_until_ms.max(moved.holds.whole_until_ms),
                        budget_until_ms: s.holds.budget_until_ms.max(moved.holds.budget_until_ms),
                    };
                })
            })?;
            if kept.is_none() {
                // The earlier slot was claimed a moment ago, so it cannot have gone; if it did, say so.
                log::warn!("the state of '{name}' was in two slots and the earlier one went: a few counts are lost");
            }
        }
        return Ok(key);
    }
    Ok(claimed)
}

/// `name`'s state and where it lives, looking at `hint` first; `None` when it has none.
pub fn read(keys: &Keys, name: &str, hint: Option<&str>) -> Result<Option<(String, TenantState)>, StoreError> {
    if let Some(key) = hint {
        let s: Slot = store::read(key)?;
        if s.is_owned_by(name) {
            return Ok(Some((key.to_string(), s.state)));
        }
    }
    for n in slot::slots(name) {
        let key = keys.slot(n);
        let s: Slot = store::read(&key)?;
        if s.is_owned_by(name) {
            return Ok(Some((key, s.state)));
        }
    }
    Ok(None)
}

/// What the sweep found in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// Nothing there (never claimed, or freed already).
    Empty,
    /// Its state no longer mattered: the slot is empty now.
    Freed,
    /// Only its budget still matters: the slot keeps the budget alone now.
    Compacted,
    /// Its state still matters.
    Held,
}

/// Frees slot `n` if its holds are over, or keeps only its budget if that alone still matters;
/// a slot updated meanwhile keeps its state (each write is a compare-and-swap).
pub fn sweep(keys: &Keys, n: u64, now_ms: u64) -> Swept {
    let key = keys.slot(n);
    let Ok((Some(bytes), Some(cas))) = crate::host::shared_get(&key) else { return Swept::Empty };
    if bytes.is_empty() {
        return Swept::Empty;
    }
    match Slot::decode(&bytes) {
        Some(mut s) if s.can_compact(now_ms) => {
            s.compact();
            match crate::host::shared_set(&key, &s.encode(), Some(cas)) {
                Ok(()) => Swept::Compacted,
                Err(_) => Swept::Held, // updated meanwhile: judged again next pass
            }
        }
        Some(s) if !s.is_free(now_ms) => Swept::Held,
        // Past its holds, or unreadable: free it.
        _ => match crate::host::shared_set(&key, b"", Some(cas)) {
            Ok(()) => Swept::Freed,
            Err(_) => Swept::Held,
        },
    }
}

/// Where a request's state is: its name, and the slot it was found in (held while the request
/// is in flight, so later updates of the request find it there at once).
#[derive(Debug, Clone)]
pub struct StateAt {
    pub name: String,
    pub key: String,
}

impl StateAt {
    /// Applies `f` to the state, holding it as `limits` say; `Ok(None)` if it has gone.
    pub fn update<R>(
        &self,
        keys: &Keys,
        limits: &Limits,
        now_ms: u64,
        f: impl FnMut(&mut TenantState) -> R,
    ) -> Result<Option<Updated<R>>, StoreError> {
        update(keys, &self.name, Some(&self.key), Missing::Skip, Hold::Judge(limits), now_ms, f)
    }

    pub fn read(&self, keys: &Keys) -> Result<Option<TenantState>, StoreError> {
        Ok(read(keys, &self.name, Some(&self.key))?.map(|(_, s)| s))
    }
}
