//! Agent runs in shared data: each run's record under its verified tenant, in a bounded table
//! of slots (see `fusebox_engine::run::slots`), and the run tree's totals on the root run's
//! record (see `fusebox_engine::run`).

use crate::store::{self, Keys, StoreError};
use fusebox_engine::fleet::RunPart;
use fusebox_engine::policy::Limits;
use fusebox_engine::run::{slots, RunDenied, RunLimit, RunRecord, PROBES};

/// A run step that was admitted: where its tokens go at the end.
#[derive(Debug, Clone)]
pub struct AdmittedRun {
    pub run_id: String,
    pub root_id: String,
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

/// The live record of `run_id` and its key, if the run is known.
fn find(
    keys: &Keys,
    tenant: &str,
    run_id: &str,
    limits: &Limits,
    now_ms: u64,
) -> Result<Option<(String, RunRecord)>, StoreError> {
    for slot in slots(run_id) {
        let key = keys.run(tenant, slot);
        let record: RunRecord = store::read(&key)?;
        if record.is_live_for(run_id, limits, now_ms) {
            return Ok(Some((key, record)));
        }
    }
    Ok(None)
}

/// Puts `fresh` in the first slot that is `fresh.id`'s own or free; `None` when all are taken.
fn claim(
    keys: &Keys,
    tenant: &str,
    fresh: &RunRecord,
    limits: &Limits,
    now_ms: u64,
) -> Result<Option<String>, StoreError> {
    for slot in slots(&fresh.id) {
        let key = keys.run(tenant, slot);
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
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Admits one step of `run_id` (a sub-run of `parent` if given) for `tenant`.
pub fn admit(
    keys: &Keys,
    tenant: &str,
    run_id: &str,
    parent: Option<&str>,
    limits: &Limits,
    now_ms: u64,
) -> Result<AdmittedRun, RunRefusal> {
    // The key of the run's own record, when it has one already (known, or claimed below).
    let (own_key, own) = match find(keys, tenant, run_id, limits, now_ms)? {
        Some((key, record)) => (Some(key), record),
        None => {
            let parent_record = match parent {
                Some(p) => find(keys, tenant, p, limits, now_ms)?.map(|(_, r)| r),
                None => None,
            };
            let record = RunRecord::new(run_id, parent.map(|p| (p, parent_record.as_ref())), now_ms);
            if record.root.is_some() {
                // A sub-run's own record only remembers its place in the tree.
                claim(keys, tenant, &record, limits, now_ms)?.ok_or(RunRefusal::Denied(FULL))?;
            }
            (None, record)
        }
    };
    own.check_depth(limits).map_err(RunRefusal::Denied)?;
    let root_id = own.root_id(run_id).to_string();
    // A root run's totals are on its own record (no second look-up); a sub-run looks its root up.
    let known_root = match &own.root {
        None => own_key,
        Some(_) => find(keys, tenant, &root_id, limits, now_ms)?.map(|(key, _)| key),
    };
    let root_key = match known_root {
        Some(key) => key,
        None => claim(keys, tenant, &RunRecord::new(&root_id, None, now_ms), limits, now_ms)?
            .ok_or(RunRefusal::Denied(FULL))?,
    };
    let (step, _) = store::update(keys, &root_key, |r: &mut RunRecord| {
        if !r.is_live_for(&root_id, limits, now_ms) {
            // The slot was reused between our look-up and now: the run starts again here.
            *r = RunRecord::new(&root_id, None, now_ms);
        }
        r.admit_step(limits, now_ms)
    })?;
    step.map_err(RunRefusal::Denied)?;
    Ok(AdmittedRun { run_id: run_id.to_string(), root_id, root_key })
}

/// The slot key and record of `tenant`'s root run `root_id`, if this Envoy holds one.
pub fn root_record(keys: &Keys, tenant: &str, root_id: &str) -> Result<Option<(String, RunRecord)>, StoreError> {
    for slot in slots(root_id) {
        let key = keys.run(tenant, slot);
        let record: RunRecord = store::read(&key)?;
        if record.id == root_id && record.root.is_none() && record.started_ms != 0 {
            return Ok(Some((key, record)));
        }
    }
    Ok(None)
}

/// Writes the rest of the fleet's part of a run tree into its root record at `key`.
pub fn write_fleet_part(keys: &Keys, key: &str, root_id: &str, part: RunPart) -> Result<(), StoreError> {
    store::update(keys, key, |r: &mut RunRecord| {
        // Only while the slot still holds this run's root (it could have been reused).
        if r.id == root_id && r.root.is_none() {
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
        if r.id == run.root_id {
            r.add_tokens(limits, tokens, now_ms)
        } else {
            None
        }
    })
    .map(|(t, _)| t)
}
