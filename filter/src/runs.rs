//! Agent runs in shared data: each run's record in one bounded table of slots (see
//! `fusebox_engine::run::slots`), named by its tenant-qualified id (`tenant/run`, the fleet's
//! name for it too), so a run id cannot touch another tenant's run; the run tree's totals are on
//! the root run's record (see `fusebox_engine::run`).

use crate::store::{self, Keys, StoreError};
use fusebox_engine::fleet::{run_name, RunPart};
use fusebox_engine::policy::{Limit, Limits};
use fusebox_engine::run::{slots, RunDenied, RunLimit, RunRecord, PROBES};

/// A run step that was admitted: where its tokens go at the end.
#[derive(Debug, Clone)]
pub struct AdmittedRun {
    pub run_id: String,
    /// The shadowed run limit that would have refused this step, if any.
    pub shadowed: Option<Limit>,
    /// The root run's tenant-qualified id: the record holding the tree's totals, and the run's
    /// name in the fleet.
    pub root: String,
    pub root_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRefusal {
    Denied(RunDenied),
    Store(StoreError),
}

impl From<StoreError> for RunRefusal {
    fn from(e: StoreError) -> Self {
        RunRefusal::Store(e)
    }
}

const FULL: RunDenied = RunDenied { limit: RunLimit::Capacity, threshold: PROBES, observed: PROBES };

/// The live record of the run `id` (tenant-qualified) and its key, if the run is known.
fn find(keys: &Keys, id: &str, limits: &Limits, now_ms: u64) -> Result<Option<(String, RunRecord)>, StoreError> {
    for slot in slots(id) {
        let key = keys.run(slot);
        let record: RunRecord = store::read(&key)?;
        if record.is_live_for(id, limits, now_ms) {
            return Ok(Some((key, record)));
        }
    }
    Ok(None)
}

/// Puts `fresh` in the first slot that is `fresh.id`'s own or free (telling `on_claim` which);
/// `None` when all are taken.
fn claim(
    keys: &Keys,
    fresh: &RunRecord,
    limits: &Limits,
    now_ms: u64,
    on_claim: &mut impl FnMut(u64),
) -> Result<Option<String>, StoreError> {
    for slot in slots(&fresh.id) {
        let key = keys.run(slot);
        let (claimed, _) = store::update(keys, &key, |r: &mut RunRecord| {
            if r.is_live_for(&fresh.id, limits, now_ms) {
                true
            } else if r.is_free(limits, now_ms) {
                *r = fresh.clone();
                true
            } else {
                false
            }
        })?;
        if claimed {
            on_claim(slot);
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Admits one step of `run_id` (a sub-run of `parent` if given) for `tenant`, under the
/// enforced limits and beside them, read-only, the shadowed ones.
pub fn admit(
    keys: &Keys,
    tenant: &str,
    run_id: &str,
    parent: Option<&str>,
    (limits, shadow): (&Limits, Option<&Limits>),
    now_ms: u64,
    mut on_claim: impl FnMut(u64),
) -> Result<AdmittedRun, RunRefusal> {
    let id = run_name(tenant, run_id);
    let fresh = |id: &str, parent: Option<(&str, Option<&RunRecord>)>| {
        // The ttl it is kept for, should it never be admitted (the sweep reads it).
        RunRecord { ttl_s: limits.run_ttl_s, ..RunRecord::new(id, parent, now_ms) }
    };
    // The key of the run's own record, when it has one already (known, or claimed below).
    let (own_key, own) = match find(keys, &id, limits, now_ms)? {
        Some((key, record)) => (Some(key), record),
        None => {
            let parent = parent.map(|p| run_name(tenant, p));
            let parent_record = match &parent {
                Some(p) => find(keys, p, limits, now_ms)?.map(|(_, r)| r),
                None => None,
            };
            let record = fresh(&id, parent.as_deref().map(|p| (p, parent_record.as_ref())));
            if record.root.is_some() {
                // A sub-run's own record only remembers its place in the tree.
                claim(keys, &record, limits, now_ms, &mut on_claim)?.ok_or(RunRefusal::Denied(FULL))?;
            }
            (None, record)
        }
    };
    own.check_depth(limits).map_err(RunRefusal::Denied)?;
    let root = own.root_id(&id).to_string();
    // A root run's totals are on its own record (no second look-up); a sub-run looks its root up.
    let known_root = match &own.root {
        None => own_key,
        Some(_) => find(keys, &root, limits, now_ms)?.map(|(key, _)| key),
    };
    let root_key = match known_root {
        Some(key) => key,
        None => claim(keys, &fresh(&root, None), limits, now_ms, &mut on_claim)?.ok_or(RunRefusal::Denied(FULL))?,
    };
    let ((step, shadowed), _) = store::update(keys, &root_key, |r: &mut RunRecord| {
        if !r.is_live_for(&root, limits, now_ms) {
            // The slot was reused between our look-up and now: the run starts again here.
            *r = fresh(&root, None);
        }
        let shadowed = shadow.and_then(|sh| r.shadow_refusal(&own, sh, now_ms)).and_then(Limit::of_run);
        (r.admit_step(limits, now_ms), shadowed)
    })?;
    step.map_err(RunRefusal::Denied)?;
    Ok(AdmittedRun { run_id: run_id.to_string(), shadowed, root, root_key })
}

/// The slot key and record of the root run named `root` (`tenant/run`), if this Envoy holds one.
pub fn root_record(keys: &Keys, root: &str) -> Result<Option<(String, RunRecord)>, StoreError> {
    for slot in slots(root) {
        let key = keys.run(slot);
        let record: RunRecord = store::read(&key)?;
        if record.id == root && record.root.is_none() && record.started_ms != 0 {
            return Ok(Some((key, record)));
        }
    }
    Ok(None)
}

/// Writes the rest of the fleet's part of a run tree into its root record at `key`.
pub fn write_fleet_part(keys: &Keys, key: &str, root: &str, part: RunPart) -> Result<(), StoreError> {
    store::update(keys, key, |r: &mut RunRecord| {
        // Only while the slot still holds this run's root (it could have been reused).
        if r.id == root && r.root.is_none() {
            r.fleet = part;
        }
    })
    .map(|_| ())
}

/// Adds a finished step's tokens to its run tree; returns a trip it caused.
pub fn settle(
    keys: &Keys,
    run: &AdmittedRun,
    limits: &Limits,
    tokens: u64,
    now_ms: u64,
) -> Result<Option<RunDenied>, StoreError> {
    store::update(keys, &run.root_key, |r: &mut RunRecord| {
        // Only while the slot still holds this run (it could have expired and been reused).
        if r.id == run.root {
            r.add_tokens(limits, tokens, now_ms)
        } else {
            None
        }
    })
    .map(|(t, _)| t)
}

/// Frees run slot `n` if its record is stale; returns whether the slot is empty now. A record
/// updated meanwhile stays (the write is a compare-and-swap).
pub fn sweep(keys: &Keys, n: u64, now_ms: u64) -> bool {
    let key = keys.run(n);
    let Ok((Some(bytes), Some(cas))) = crate::host::shared_get(&key) else { return true };
    if bytes.is_empty() {
        return true;
    }
    let stale = RunRecord::decode(&bytes).is_none_or(|r| r.is_stale(now_ms));
    stale && crate::host::shared_set(&key, b"", Some(cas)).is_ok()
}
