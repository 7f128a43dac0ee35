//! One run's record, and the judgement of a run tree's limits on its root record.

use super::{RunDenied, RunLimit};
use crate::fleet::RunPart;
use crate::policy::Limits;

/// One run's record. For a root run it also holds the totals of the whole run tree: this
/// Envoy's (the counts here) and, with a fleet, every other Envoy's (`fleet`).
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
    /// The run's `run_ttl_s` when it was last admitted (the fleet keeps this Envoy's part as long).
    pub ttl_s: u64,
    /// The rest of the fleet's part of the run tree, as of the last sync.
    pub fleet: RunPart,
}

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

    /// Idle for `run_ttl_s` here and, with a fleet, everywhere else too.
    pub fn is_expired(&self, limits: &Limits, now_ms: u64) -> bool {
        let last_seen_ms = self.last_seen_ms.max(self.fleet.last_seen_ms);
        now_ms.saturating_sub(last_seen_ms) > limits.run_ttl_s.saturating_mul(1000)
    }

    /// Whether the record can go (the sweep): empty, or idle everywhere past the ttl it was
    /// admitted with (an hour if it never was).
    pub fn is_stale(&self, now_ms: u64) -> bool {
        let ttl_s = if self.ttl_s == 0 { 3600 } else { self.ttl_s };
        let last_seen_ms = self.last_seen_ms.max(self.fleet.last_seen_ms);
        self.started_ms == 0 || now_ms.saturating_sub(last_seen_ms) > ttl_s.saturating_mul(1000)
    }

    /// This Envoy's part of the run tree, for the fleet (a root record's).
    pub fn own_part(&self) -> RunPart {
        RunPart {
            steps: self.steps,
            tokens: self.tokens,
            started_ms: self.started_ms,
            last_seen_ms: self.last_seen_ms,
            ttl_s: self.ttl_s,
        }
    }

    /// Steps and tokens of the whole tree, here and elsewhere.
    fn totals(&self) -> (u64, u64) {
        (self.steps.saturating_add(self.fleet.steps), self.tokens.saturating_add(self.fleet.tokens))
    }

    /// Admits one step of the run tree (called on the root record).
    pub fn admit_step(&mut self, limits: &Limits, now_ms: u64) -> Result<(), RunDenied> {
        if let Some(t) = self.tripped {
            return Err(t);
        }
        let (steps, tokens) = self.totals();
        let started_ms = RunPart::earliest(self.started_ms, self.fleet.started_ms);
        let elapsed_s = now_ms.saturating_sub(started_ms) / 1000;
        let checks =
            [(RunLimit::Steps, steps.saturating_add(1)), (RunLimit::Duration, elapsed_s), (RunLimit::Tokens, tokens)];
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
        self.ttl_s = limits.run_ttl_s;
        Ok(())
    }

    /// The shadowed run limit (see `policy::shadow`) one more step of this tree would be
    /// refused by, judged on the root record (depth on the run's own). Read-only.
    pub fn shadow_refusal(&self, own: &RunRecord, shadow: &Limits, now_ms: u64) -> Option<RunLimit> {
        if let Err(d) = own.check_depth(shadow) {
            return Some(d.limit);
        }
        let (steps, tokens) = self.totals();
        let started_ms = RunPart::earliest(self.started_ms, self.fleet.started_ms);
        let elapsed_s = now_ms.saturating_sub(started_ms) / 1000;
        [(RunLimit::Steps, steps.saturating_add(1)), (RunLimit::Duration, elapsed_s), (RunLimit::Tokens, tokens)]
            .into_iter()
            .find(|(limit, observed)| limit.threshold(shadow).is_some_and(|t| *observed > t))
            .map(|(limit, _)| limit)
    }

    /// Adds a finished step's tokens (called on the root record); trips the run if over.
    pub fn add_tokens(&mut self, limits: &Limits, tokens: u64, now_ms: u64) -> Option<RunDenied> {
        self.tokens = self.tokens.saturating_add(tokens);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        let threshold = limits.run_tokens?;
        let (_, total) = self.totals();
        if self.tripped.is_none() && total > threshold {
            self.tripped = Some(RunDenied { limit: RunLimit::Tokens, threshold, observed: total });
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunLimit;

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
    fn shadowed_run_limits_name_the_step_they_would_refuse_without_tripping_the_run() {
        let (enforced, shadow) = Limits { mode: crate::policy::LimitMode::Shadow, ..limits() }.split_shadow();
        let shadow = shadow.unwrap();
        let mut root = RunRecord::new("r", None, T0);
        for _ in 0..3 {
            assert_eq!(root.shadow_refusal(&root, &shadow, T0), None);
            root.admit_step(&enforced, T0).unwrap();
        }
        assert_eq!(root.shadow_refusal(&root, &shadow, T0), Some(RunLimit::Steps));
        root.admit_step(&enforced, T0).unwrap();
        assert_eq!(root.tripped, None);
        let deep = RunRecord { depth: 3, ..RunRecord::new("d", None, T0) };
        assert_eq!(root.shadow_refusal(&deep, &shadow, T0), Some(RunLimit::Depth));
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

    fn part(steps: u64, tokens: u64, started_ms: u64) -> RunPart {
        RunPart { steps, tokens, started_ms, last_seen_ms: started_ms, ttl_s: 600 }
    }

    #[test]
    fn the_fleets_steps_count_toward_the_step_limit() {
        let l = limits();
        let mut root = RunRecord::new("r", None, T0);
        root.admit_step(&l, T0).unwrap();
        root.fleet = part(2, 0, T0);
        assert_eq!(root.admit_step(&l, T0), Err(RunDenied { limit: RunLimit::Steps, threshold: 3, observed: 4 }));
    }

    #[test]
    fn the_fleets_tokens_and_earliest_start_count_toward_their_limits() {
        let l = limits();
        let mut root = RunRecord::new("r", None, T0);
        root.admit_step(&l, T0).unwrap();
        root.fleet = part(1, 900, T0);
        assert_eq!(
            root.add_tokens(&l, 200, T0),
            Some(RunDenied { limit: RunLimit::Tokens, threshold: 1000, observed: 1100 })
        );
        let mut late = RunRecord::new("late", None, T0 + 50_000);
        late.fleet = part(1, 0, T0);
        assert_eq!(
            late.admit_step(&l, T0 + 61_000).map_err(|d| d.limit),
            Err(RunLimit::Duration),
            "started elsewhere 61 s ago"
        );
    }

    #[test]
    fn a_record_is_stale_once_idle_past_its_ttl_or_an_hour_without_one() {
        let l = limits();
        let mut root = RunRecord::new("acme/r", None, T0);
        assert!(!root.is_stale(T0 + 3_600_000) && root.is_stale(T0 + 3_600_001), "never admitted: an hour");
        root.admit_step(&l, T0).unwrap();
        assert!(!root.is_stale(T0 + 600_000) && root.is_stale(T0 + 600_001), "its run_ttl_s");
        assert!(RunRecord::default().is_stale(T0));
    }

    #[test]
    fn a_run_seen_elsewhere_lately_stays_alive_here_and_its_part_carries_the_ttl() {
        let l = limits();
        let mut root = RunRecord::new("r", None, T0);
        root.admit_step(&l, T0).unwrap();
        assert_eq!(root.own_part(), RunPart { steps: 1, tokens: 0, started_ms: T0, last_seen_ms: T0, ttl_s: 600 });
        root.fleet = RunPart { last_seen_ms: T0 + 500_000, ..part(1, 0, T0) };
        assert!(!root.is_expired(&l, T0 + 700_000));
        assert!(root.is_expired(&l, T0 + 1_100_001));
    }
}
