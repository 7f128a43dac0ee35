//! Tenant states in shared data, in the fixed table of buckets (see
//! `fusebox_engine::state::bucket` and `::entry`): finding a state by its name, adding one for a
//! new name, and the singleton's sweep that removes the states nobody needs any more.
//!
//! A name has exactly one bucket, and every change to a bucket is one compare-and-swap of its
//! whole value, so two workers adding the same new name at once cannot make two states of it:
//! the second write fails its CAS, reads the bucket again and finds the first one's entry.

use crate::store::{self, Keys, StoreError, Swept, UpdateInfo};
use fusebox_engine::policy::Limits;
use fusebox_engine::state::bucket::{Bucket, Keep, Taken};
use fusebox_engine::state::entry::{self, holds, StateEntry, PER_BUCKET};
use fusebox_engine::state::TenantState;

/// A bucket of the state table, as stored.
pub type StateBucket = Bucket<StateEntry>;

/// The name of a tenant's state on a route with a tier of its own (`#` cannot occur in a
/// tenant id, so it never collides with the tenant's own state).
pub fn route_name(tenant: &str, tier: &str) -> String {
    format!("{tenant}#{tier}")
}

/// How an update sets the entry's hold.
#[derive(Debug, Clone, Copy)]
pub enum Hold<'a> {
    /// Judged again from the tenant's limits (what requests do).
    Judge(&'a Limits),
    /// Left as it is (the fleet's usage written in by the singleton).
    Keep,
}

/// Whether an update may add a state for a name that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Claim,
    Skip,
}

/// What an update did, and where the state lives (its bucket's key, for the next update).
pub struct Updated<R> {
    pub result: R,
    pub info: UpdateInfo,
    pub key: String,
    /// The bucket a new state was added to, if this update added one (the singleton's sweep must
    /// hear of it).
    pub claimed: Option<u64>,
}

/// Applies `f` to `name`'s state atomically, in the bucket at `key` (computed from the name when
/// not given). A name with no state gets one when `missing` says so (`Ok(None)` otherwise);
/// `Err(Full)` when its bucket holds [`PER_BUCKET`] states that all still matter.
pub fn update<R>(
    keys: &Keys,
    name: &str,
    key: Option<&str>,
    missing: Missing,
    hold: Hold<'_>,
    now_ms: u64,
    mut f: impl FnMut(&mut TenantState) -> R,
) -> Result<Option<Updated<R>>, StoreError> {
    let n = entry::bucket(name);
    let key = key.filter(|k| !k.is_empty()).map_or_else(|| keys.state_bucket(n), str::to_string);
    let (mut claimed, mut full, mut unreadable) = (false, false, false);
    let updated = store::update_if(keys, &key, |b: &mut StateBucket| {
        (claimed, full) = (false, false);
        let taken = match missing {
            Missing::Skip => b.take(name).map(Taken::Found),
            Missing::Claim => {
                let added = b.take_or_add(name, PER_BUCKET, |e| e.is_free(now_ms), || StateEntry::claimed(name));
                full = added.is_err();
                added.ok()
            }
        };
        unreadable = b.unreadable() > 0;
        let mut e = match taken? {
            Taken::Found(e) => e,
            Taken::Added(e) => {
                claimed = true;
                e
            }
        };
        let r = f(&mut e.state);
        e.holds = match hold {
            Hold::Judge(limits) => holds(&e.state, limits, now_ms),
            Hold::Keep if claimed => holds(&e.state, &Limits::unlimited(), now_ms),
            Hold::Keep => e.holds,
        };
        b.put(e);
        Some(r)
    })?;
    if full {
        return Err(StoreError::Full);
    }
    Ok(updated.map(|(result, mut info)| {
        info.corrupt |= unreadable;
        Updated { result, info, key, claimed: claimed.then_some(n) }
    }))
}

/// `name`'s state and its bucket's key, looking in the bucket at `key` if given; `None` when it
/// has none.
pub fn read(keys: &Keys, name: &str, key: Option<&str>) -> Result<Option<(String, TenantState)>, StoreError> {
    let key = key.filter(|k| !k.is_empty()).map_or_else(|| keys.state_bucket(entry::bucket(name)), str::to_string);
    let b: StateBucket = store::read(&key)?;
    Ok(b.get(name).map(|e| (key, e.state)))
}

/// Removes the states of bucket `n` whose holds are over and keeps only the budget of those whose
/// budget alone still matters (`changed`: compacted, `dropped`: freed).
pub fn sweep(keys: &Keys, n: u64, now_ms: u64) -> Option<Swept> {
    store::sweep_bucket(&keys.state_bucket(n), |e: &mut StateEntry| {
        if e.can_compact(now_ms) {
            e.compact();
            Keep::Changed
        } else if e.is_free(now_ms) {
            Keep::Drop
        } else {
            Keep::Whole
        }
    })
}

/// Where a request's state is: its name, and its bucket's key (kept while the request is in
/// flight, so later updates of the request do not work it out again).
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
