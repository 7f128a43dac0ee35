//! Agent runs: per-run limits on steps, tokens, wall-clock duration and depth.
//!
//! A run is named by the client (`x-agent-run-id`, with `x-agent-parent-run-id` for a
//! sub-agent) but always scoped under the verified tenant, so a run id cannot touch another
//! tenant's run. Depth is computed from the parent chain as stored, never taken from the
//! client; a sub-agent's steps and tokens count toward its root run. Run limits are
//! cumulative, so a run that crosses one is over: its breaker stays open (every later request
//! of the run and of its sub-agents is refused) until the run's record expires after
//! `run_ttl_s` of inactivity. Other runs of the tenant are untouched.
//!
//! With a fleet, a root run's record also holds the rest of the fleet's part of the run tree
//! (`RunRecord::fleet`, see `crate::fleet::RunPart`), and every limit is judged on the sum.
//! The tree itself is learned per Envoy: a sub-run whose parent this Envoy has not seen is
//! placed directly under that parent.

mod codec;
mod record;

use crate::ids::is_valid_tenant_id;
use crate::policy::Limits;
use serde::Serialize;

pub use record::RunRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunLimit {
    #[serde(rename = "run_steps")]
    Steps,
    #[serde(rename = "run_depth")]
    Depth,
    #[serde(rename = "run_duration")]
    Duration,
    #[serde(rename = "run_tokens")]
    Tokens,
    /// Every slot a new run id could take is held by another live run of the tenant.
    #[serde(rename = "run_capacity")]
    Capacity,
}

impl RunLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            RunLimit::Steps => "run_steps",
            RunLimit::Depth => "run_depth",
            RunLimit::Duration => "run_duration",
            RunLimit::Tokens => "run_tokens",
            RunLimit::Capacity => "run_capacity",
        }
    }

    fn code(self) -> u8 {
        match self {
            RunLimit::Steps => 1,
            RunLimit::Depth => 2,
            RunLimit::Duration => 3,
            RunLimit::Tokens => 4,
            RunLimit::Capacity => 5,
        }
    }

    fn from_code(c: u8) -> Option<RunLimit> {
        [RunLimit::Steps, RunLimit::Depth, RunLimit::Duration, RunLimit::Tokens, RunLimit::Capacity]
            .into_iter()
            .find(|l| l.code() == c)
    }

    fn threshold(self, limits: &Limits) -> Option<u64> {
        match self {
            RunLimit::Steps => limits.run_steps,
            RunLimit::Depth => limits.run_depth,
            RunLimit::Duration => limits.run_duration_s,
            RunLimit::Tokens => limits.run_tokens,
            RunLimit::Capacity => None,
        }
    }
}

/// Why a run was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDenied {
    pub limit: RunLimit,
    pub threshold: u64,
    pub observed: u64,
}

/// Run ids follow the same rules as tenant ids (safe in keys, headers and logs).
pub fn is_valid_run_id(id: &str) -> bool {
    is_valid_tenant_id(id)
}

/// Run records in one Envoy: a run's record lives in one bucket of a fixed table (see
/// [`crate::state::bucket`]), from the hash of its tenant-qualified id (`tenant/run`), so neither
/// invented run ids nor invented tenants grow memory past [`RUN_BUCKETS`] keys of at most
/// [`RUNS_PER_BUCKET`] records; the singleton's sweep removes the stale ones.
pub const RUN_BUCKETS: u64 = 1 << 16;
pub const RUNS_PER_BUCKET: usize = 32;

/// The bucket of a run, by its tenant-qualified id.
pub fn bucket(qualified_id: &str) -> u64 {
    crate::state::bucket::bucket_of(qualified_id, RUN_BUCKETS)
}

impl crate::state::bucket::Named for RunRecord {
    fn name(&self) -> &str {
        &self.id
    }

    /// The whole record (it carries its id too: runs are few beside tenant states).
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }

    fn decode_body(name: &str, body: &[u8]) -> Option<RunRecord> {
        RunRecord::decode(body).filter(|r| r.id == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::bucket::Bucket;

    #[test]
    fn a_run_record_is_kept_in_its_bucket_under_its_qualified_id() {
        let record = RunRecord::new("acme/run-1", None, 1_000);
        let mut b = Bucket::default();
        b.put(record.clone());
        let back: Bucket<RunRecord> = Bucket::decode(b.encode()).unwrap();
        assert_eq!(back.get("acme/run-1"), Some(record));
        assert_eq!(back.get("globex/run-1"), None);
        assert!(bucket("acme/run-1") < RUN_BUCKETS);
        assert_eq!(bucket("acme/run-1"), bucket("acme/run-1"));
    }
}
