//! Agent runs in shared data: each run's record in one bucket of a fixed table (see
//! `fusebox_engine::run`), named by its tenant-qualified id (`tenant/run`, the fleet's name for
//! it too), so a run id cannot touch another tenant's run; the run tree's totals are on the root
//! run's record.

use crate::store::{self, Keys, StoreError};
use fusebox_engine::fleet::{run_name, RunPart};
use fusebox_engine::policy::{Limit, Limits};
use fusebox_engine::run::{bucket, RunDenied, RunLimit, RunRecord, RUNS_PER_BUCKET};
use fusebox_engine::state::bucket::{Bucket, Full, Keep, Taken};

type RunBucket = Bucket<RunRecord>;

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

const FULL: RunDenied =
    RunDenied { limit: RunLimit::Capacity, threshold: RUNS_PER_BUCKET as u64, observed: RUNS_PER_BUCKET as u64 };

fn key_of(keys: &Keys, id: &str) -> String {
    keys.run_bucket(bucket(id))
}

/// The live record of the run `id` (tenant-qualified) and its key, if the run is known.
fn find(keys: &Keys, id: &str, limits: &Limits, now_ms: u64) -> Result<Option<(String, RunRecord)>, StoreError> {
    let key = key_of(keys, id);
    let b: RunBucket = store::read(&key)?;
    Ok(b.get(id).filter(|r| r.is_live_for(id, limits, now_ms)).map(|r| (key, r)))
}

/// Puts `fresh` in its bucket unless the run has a live record there already (telling
/// `on_claim` when it added one); `None` when the bucket is full of live runs.
fn claim(
    keys: &Keys,
    fresh: &RunRecord,
    limits: &Limits,
    now_ms: u64,
    on_claim: &mut impl FnMut(u64),
) -> Result<Option<String>, StoreError> {
    let n = bucket(&fresh.id);
    let key = keys.run_bucket(n);
    let mut added = false;
    let (claimed, _) = store::update(keys, &key, |b: &mut RunBucket| {
        added = false;
        match b.take_or_add(&fresh.id, RUNS_PER_BUCKET, |r| r.is_stale(now_ms), || fresh.clone()) {
            Ok(Taken::Found(r)) if r.is_live_for(&fresh.id, limits, now_ms) => b.put(r),
            // Its record expired (or it had none): it starts afresh.
            Ok(Taken::Found(_) | Taken::Added(_)) => {
                b.put(fresh.clone());
                added = true;
            }
            Err(Full) => return false,
        }
        true
    })?;
    if added {
        on_claim(n);
    }
    Ok(claimed.then_some(key))
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
    let ((step, shadowed), _) = store::update(keys, &root_key, |b: &mut RunBucket| {
        let mut r = match b.take(&root) {
            Some(r) if r.is_live_for(&root, limits, now_ms) => r,
            // Gone (expired and swept) between our look-up and now: the run starts again here.
            _ => fresh(&root, None),
        };
        let shadowed = shadow.and_then(|sh| r.shadow_refusal(&own, sh, now_ms)).and_then(Limit::of_run);
        let step = r.admit_step(limits, now_ms);
        b.put(r);
        (step, shadowed)
    })?;
    step.map_err(RunRefusal::Denied)?;
    Ok(AdmittedRun { run_id: run_id.to_string(), shadowed, root, root_key })
}

/// The bucket key and record of the root run named `root` (`tenant/run`), if this Envoy holds one.
pub fn root_record(keys: &Keys, root: &str) -> Result<Option<(String, RunRecord)>, StoreError> {
    let key = key_of(keys, root);
    let b: RunBucket = store::read(&key)?;
    Ok(b.get(root).filter(|r| r.root.is_none() && r.started_ms != 0).map(|r| (key, r)))
}

/// Applies `f` to the root record `root` in the bucket at `key`, if it is there (it could have
/// expired and been swept).
fn update_root<R>(
    keys: &Keys,
    key: &str,
    root: &str,
    mut f: impl FnMut(&mut RunRecord) -> R,
) -> Result<Option<R>, StoreError> {
    let updated = store::update_if(keys, key, |b: &mut RunBucket| {
        let mut r = b.take(root).filter(|r| r.root.is_none())?;
        let out = f(&mut r);
        b.put(r);
        Some(out)
    })?;
    Ok(updated.map(|(r, _)| r))
}

/// Writes the rest of the fleet's part of a run tree into its root record at `key`.
pub fn write_fleet_part(keys: &Keys, key: &str, root: &str, part: RunPart) -> Result<(), StoreError> {
    update_root(keys, key, root, |r| r.fleet = part).map(|_| ())
}

/// Adds a finished step's tokens to its run tree; returns a trip it caused.
pub fn settle(
    keys: &Keys,
    run: &AdmittedRun,
    limits: &Limits,
    tokens: u64,
    now_ms: u64,
) -> Result<Option<RunDenied>, StoreError> {
    Ok(update_root(keys, &run.root_key, &run.root, |r| r.add_tokens(limits, tokens, now_ms))?.flatten())
}

/// Removes the stale records of run bucket `n` (see [`store::sweep_bucket`]).
pub fn sweep(keys: &Keys, n: u64, now_ms: u64) -> Option<store::Swept> {
    store::sweep_bucket(
        &keys.run_bucket(n),
        |r: &mut RunRecord| if r.is_stale(now_ms) { Keep::Drop } else { Keep::Whole },
    )
}
