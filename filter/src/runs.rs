//! Agent runs in shared data: each run's record under its verified tenant, and the run tree's
//! totals on the root run's record (see `fusebox_engine::run`).

use crate::store::{self, Keys, StoreError};
use fusebox_engine::policy::Limits;
use fusebox_engine::run::{RunDenied, RunRecord};

/// A run step that was admitted: where its tokens go at the end.
#[derive(Debug, Clone)]
pub struct AdmittedRun {
    pub run_id: String,
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

fn live(record: RunRecord, limits: &Limits, now_ms: u64) -> Option<RunRecord> {
    (record.started_ms != 0 && !record.is_expired(limits, now_ms)).then_some(record)
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
    let own_key = keys.run(tenant, run_id);
    let own = match live(store::read(&own_key)?, limits, now_ms) {
        Some(record) => record,
        None => {
            let parent_record = match parent {
                Some(p) => live(store::read(&keys.run(tenant, p))?, limits, now_ms),
                None => None,
            };
            let record = RunRecord::new(run_id, parent.map(|p| (p, parent_record.as_ref())), now_ms);
            if record.root.is_some() {
                // A sub-run's own record only remembers its place in the tree.
                let fresh = record.clone();
                store::update(keys, &own_key, |r: &mut RunRecord| {
                    if live(r.clone(), limits, now_ms).is_none() {
                        *r = fresh.clone();
                    }
                })?;
            }
            record
        }
    };
    own.check_depth(limits).map_err(RunRefusal::Denied)?;
    let root_id = own.root_id(run_id).to_string();
    let root_key = keys.run(tenant, &root_id);
    let (step, _) = store::update(keys, &root_key, |r: &mut RunRecord| {
        if live(r.clone(), limits, now_ms).is_none() {
            *r = RunRecord::new(&root_id, None, now_ms);
        }
        r.admit_step(limits, now_ms)
    })?;
    step.map_err(RunRefusal::Denied)?;
    Ok(AdmittedRun { run_id: run_id.to_string(), root_key })
}

/// Adds a finished step's tokens to its run tree; returns a trip it caused.
pub fn settle(
    keys: &Keys,
    run: &AdmittedRun,
    limits: &Limits,
    tokens: u64,
    now_ms: u64,
) -> Result<Option<RunDenied>, StoreError> {
    store::update(keys, &run.root_key, |r: &mut RunRecord| r.add_tokens(limits, tokens, now_ms)).map(|(t, _)| t)
}
