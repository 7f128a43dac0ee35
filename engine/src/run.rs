//! Agent runs: per-run limits on steps, tokens, wall-clock duration and depth.
//!
//! A run is named by the client (`x-agent-run-id`, with `x-agent-parent-run-id` for a
//! sub-agent) but always scoped under the verified tenant, so a run id cannot touch another
//! tenant's run. Depth is computed from the parent chain as stored, never taken from the
//! client; a sub-agent's steps and tokens count toward its root run. Run limits are
//! cumulative, so a run that crosses one is over: its breaker stays open (every later request
//! of the run and of its sub-agents is refused) until the run's record expires after
//! `run_ttl_s` of inactivity. Other runs of the tenant are untouched.

use crate::ids::is_valid_tenant_id;
use crate::policy::Limits;
use crate::state::codec::{take_u32, take_u64, take_u8};
use serde::Serialize;

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

/// One run's record. For a root run it also holds the totals of the whole run tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunRecord {
    /// This run's id (records live in a bounded table of slots, so a slot says whose it is).
    pub id: String,
    /// The root run's id; `None` when this record is the root.
    pub root: Option<String>,
    pub depth: u32,
    pub started_ms: u64,
    pub last_seen_ms: u64,
    pub steps: u64,
    pub tokens: u64,
    pub tripped: Option<RunDenied>,
}

const FORMAT: u8 = 2;

impl RunRecord {
    /// A new record for `run_id`, placed under its parent's record as stored (if any).
    pub fn new(run_id: &str, parent: Option<(&str, Option<&RunRecord>)>, now_ms: u64) -> RunRecord {
        let (root, depth) = match parent {
            None => (None, 0),
            Some((parent_id, Some(p))) => {
                (Some(p.root.clone().unwrap_or_else(|| parent_id.to_string())), p.depth.saturating_add(1))
            }
            Some((parent_id, None)) => (Some(parent_id.to_string()), 1),
        };
        let root = root.filter(|r| r != run_id);
        RunRecord {
            id: run_id.to_string(),
            root,
            depth,
            started_ms: now_ms,
            last_seen_ms: now_ms,
            ..RunRecord::default()
        }
    }

    /// Whether this record is `run_id`'s and still alive at `now_ms` (else its slot is free).
    pub fn is_live_for(&self, run_id: &str, limits: &Limits, now_ms: u64) -> bool {
        self.id == run_id && self.started_ms != 0 && !self.is_expired(limits, now_ms)
    }

    /// Whether the slot holding this record may be taken by another run.
    pub fn is_free(&self, limits: &Limits, now_ms: u64) -> bool {
        self.started_ms == 0 || self.is_expired(limits, now_ms)
    }

    /// The id whose record carries the totals.
    pub fn root_id<'a>(&'a self, own_id: &'a str) -> &'a str {
        self.root.as_deref().unwrap_or(own_id)
    }

    pub fn is_expired(&self, limits: &Limits, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) > limits.run_ttl_s.saturating_mul(1000)
    }

    /// Admits one step of the run tree (called on the root record).
    pub fn admit_step(&mut self, limits: &Limits, now_ms: u64) -> Result<(), RunDenied> {
        if let Some(t) = self.tripped {
            return Err(t);
        }
        let elapsed_s = now_ms.saturating_sub(self.started_ms) / 1000;
        let checks = [
            (RunLimit::Steps, self.steps.saturating_add(1)),
            (RunLimit::Duration, elapsed_s),
            (RunLimit::Tokens, self.tokens),
        ];
        for (limit, observed) in checks {
            if let Some(threshold) = limit.threshold(limits) {
                if observed > threshold {
                    let denied = RunDenied { limit, threshold, observed };
                    self.tripped = Some(denied);
                    return Err(denied);
                }
            }
        }
        self.steps += 1;
        self.last_seen_ms = now_ms;
        Ok(())
    }

    /// Adds a finished step's tokens (called on the root record); trips the run if over.
    pub fn add_tokens(&mut self, limits: &Limits, tokens: u64, now_ms: u64) -> Option<RunDenied> {
        self.tokens = self.tokens.saturating_add(tokens);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let threshold = limits.run_tokens?;
        if self.tripped.is_none() && self.tokens > threshold {
            self.tripped = Some(RunDenied { limit: RunLimit::Tokens, threshold, observed: self.tokens });
            return self.tripped;
        }
        None
    }

    /// Checks the depth of a (sub-)run against the limit.
    pub fn check_depth(&self, limits: &Limits) -> Result<(), RunDenied> {
        match limits.run_depth {
            Some(threshold) if u64::from(self.depth) > threshold => {
                Err(RunDenied { limit: RunLimit::Depth, threshold, observed: u64::from(self.depth) })
            }
            _ => Ok(()),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let root = self.root.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(80 + self.id.len() + root.len());
        out.push(FORMAT);
        // Ids are at most 128 bytes (validated), so one length byte is enough.
        for text in [self.id.as_str(), root] {
            let bytes = text.as_bytes().get(..text.len().min(255)).unwrap_or(&[]);
            out.push(u8::try_from(bytes.len()).unwrap_or(0));
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&self.depth.to_le_bytes());
        for v in [self.started_ms, self.last_seen_ms, self.steps, self.tokens] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (code, threshold, observed) = self.tripped.map_or((0, 0, 0), |t| (t.limit.code(), t.threshold, t.observed));
        out.push(code);
        out.extend_from_slice(&threshold.to_le_bytes());
        out.extend_from_slice(&observed.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RunRecord> {
        let mut input = bytes;
        if take_u8(&mut input)? != FORMAT {
            return None;
        }
        let id = take_text(&mut input)?;
        let root = Some(take_text(&mut input)?).filter(|r| !r.is_empty());
        let depth = take_u32(&mut input)?;
        let started_ms = take_u64(&mut input)?;
        let last_seen_ms = take_u64(&mut input)?;
        let steps = take_u64(&mut input)?;
        let tokens = take_u64(&mut input)?;
        let code = take_u8(&mut input)?;
        let threshold = take_u64(&mut input)?;
        let observed = take_u64(&mut input)?;
        let tripped = match code {
            0 => None,
            c => Some(RunDenied { limit: RunLimit::from_code(c)?, threshold, observed }),
        };
        input.is_empty().then_some(RunRecord { id, root, depth, started_ms, last_seen_ms, steps, tokens, tripped })
    }
}

fn take_text(input: &mut &[u8]) -> Option<String> {
    let len = usize::from(take_u8(input)?);
    let (text, rest) = (input.get(..len)?, input.get(len..)?);
    *input = rest;
    std::str::from_utf8(text).ok().map(str::to_string)
}

/// Run records per tenant: a run's record lives in one of `PROBES` slots starting at its
/// id's hash, so a tenant inventing run ids cannot grow memory past this many records.
pub const RUN_SLOTS: u64 = 4096;
pub const PROBES: u64 = 8;

/// The slots a run id may occupy, in probing order (FNV-1a of the id).
pub fn slots(run_id: &str) -> impl Iterator<Item = u64> {
    let hash =
        run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    (0..PROBES).map(move |i| (hash.wrapping_add(i)) % RUN_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn limits() -> Limits {
        Limits {
            run_steps: Some(3),
            run_depth: Some(2),
            run_duration_s: Some(60),
            run_tokens: Some(1000),
            run_ttl_s: 600,
            ..Limits::unlimited()
        }
    }

    #[test]
    fn depth_comes_from_the_stored_parent_chain() {
        let root = RunRecord::new("r", None, T0);
        let child = RunRecord::new("c", Some(("r", Some(&root))), T0);
        let grandchild = RunRecord::new("g", Some(("c", Some(&child))), T0);
        assert_eq!((root.depth, child.depth, grandchild.depth), (0, 1, 2));
        assert_eq!((child.root_id("c"), grandchild.root_id("g")), ("r", "r"));
        let great = RunRecord::new("x", Some(("g", Some(&grandchild))), T0);
        assert_eq!(great.check_depth(&limits()), Err(RunDenied { limit: RunLimit::Depth, threshold: 2, observed: 3 }));
        assert!(grandchild.check_depth(&limits()).is_ok());
    }

    #[test]
    fn an_unknown_parent_becomes_the_root() {
        let child = RunRecord::new("c", Some(("p", None)), T0);
        assert_eq!((child.root_id("c"), child.depth), ("p", 1));
        let own_parent = RunRecord::new("same", Some(("same", None)), T0);
        assert_eq!(own_parent.root, None);
    }

    #[test]
    fn steps_over_the_limit_trip_only_the_run_and_stay_tripped() {
        let l = limits();
        let mut root = RunRecord::new("r", None, T0);
        for _ in 0..3 {
            root.admit_step(&l, T0).unwrap();
        }
        let denied = RunDenied { limit: RunLimit::Steps, threshold: 3, observed: 4 };
        assert_eq!(root.admit_step(&l, T0), Err(denied));
        assert_eq!(root.admit_step(&l, T0 + 100_000), Err(denied), "cumulative: the run is over");
    }

    #[test]
    fn tokens_and_wall_clock_are_limited() {
        let l = limits();
        let mut root = RunRecord::new("r", None, T0);
        root.admit_step(&l, T0).unwrap();
        assert_eq!(root.add_tokens(&l, 1200, T0).map(|d| d.limit), Some(RunLimit::Tokens));
        assert_eq!(root.admit_step(&l, T0).map_err(|d| d.limit), Err(RunLimit::Tokens));
        let mut slow = RunRecord::new("s", None, T0);
        slow.admit_step(&l, T0).unwrap();
        assert_eq!(slow.admit_step(&l, T0 + 61_000).map_err(|d| d.limit), Err(RunLimit::Duration));
    }

    #[test]
    fn slots_are_few_fixed_and_within_the_table() {
        let a: Vec<u64> = slots("run-1").collect();
        assert_eq!(a.len() as u64, PROBES);
        assert!(a.iter().all(|s| *s < RUN_SLOTS));
        assert_eq!(a, slots("run-1").collect::<Vec<_>>());
        assert_ne!(a[0], slots("run-2").next().unwrap());
    }

    #[test]
    fn a_slot_is_free_when_empty_or_expired_and_live_only_for_its_own_run() {
        let l = limits();
        let r = RunRecord::new("r", None, T0);
        assert!(RunRecord::default().is_free(&l, T0));
        assert!(!r.is_free(&l, T0) && r.is_live_for("r", &l, T0) && !r.is_live_for("other", &l, T0));
        assert!(r.is_free(&l, T0 + 600_001));
    }

    #[test]
    fn records_expire_after_inactivity() {
        let l = limits();
        let root = RunRecord::new("r", None, T0);
        assert!(!root.is_expired(&l, T0 + 600_000));
        assert!(root.is_expired(&l, T0 + 600_001));
    }

    #[test]
    fn records_round_trip_and_garbage_does_not_decode() {
        let mut r = RunRecord::new("c", Some(("root-run", None)), T0);
        r.steps = 5;
        r.tokens = 77;
        r.tripped = Some(RunDenied { limit: RunLimit::Duration, threshold: 60, observed: 61 });
        assert_eq!(RunRecord::decode(&r.encode()), Some(r));
        let root = RunRecord::new("r", None, T0);
        assert_eq!(RunRecord::decode(&root.encode()), Some(root));
        assert_eq!(RunRecord::decode(b""), None);
        assert_eq!(RunRecord::decode(b"\x01\x05ab"), None);
    }
}
