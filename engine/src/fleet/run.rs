//! Agent runs across the fleet. Each Envoy syncs its part of every run tree it has served
//! recently (by the root run's name, `tenant/root-run-id`): the steps and tokens it counted,
//! when it first and last saw the run. It gets back the sum of every other Envoy's part, which
//! the run's record judges together with its own (`RunRecord::fleet`), so a run's step, token
//! and duration limits hold however its requests are spread.
//!
//! A part counts for the run's `run_ttl_s` after its Envoy last saw the run, as a run's record
//! does on one Envoy: a run id used again after that starts a new run everywhere.

use super::aggregate::Entry;
use super::wire::MAX_CLOCK_SKEW_S;
use crate::ids::is_valid_tenant_id;
use crate::run::is_valid_run_id;
use serde::{Deserialize, Serialize};

/// The longest `run_ttl_s` a policy may set (a week); a part claiming more is refused.
const MAX_TTL_S: u64 = 7 * 86_400;
const MAX_COUNT: u64 = 1 << 56;

/// One Envoy's part of a run tree, or the sum of several Envoys' parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPart {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub steps: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens: u64,
    /// When the run started (unix ms); in a sum, the earliest start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started_ms: u64,
    /// When the run was last seen (unix ms); in a sum, the latest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_seen_ms: u64,
    /// The run's `run_ttl_s`: how long the part counts after `last_seen_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl_s: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl RunPart {
    pub fn is_empty(&self) -> bool {
        *self == RunPart::default()
    }

    /// The earliest of two start times, where 0 means "not started".
    pub fn earliest(a: u64, b: u64) -> u64 {
        match (a, b) {
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        }
    }

    /// Refuses what no honest Envoy sends: times off control's clock, a start after the last
    /// sighting, counts or a ttl past any plausible bound.
    pub fn validate(&self, now_ms: u64) -> Result<(), String> {
        let newest = now_ms.saturating_add(MAX_CLOCK_SKEW_S * 1000);
        let oldest = now_ms.saturating_sub(MAX_TTL_S.saturating_add(MAX_CLOCK_SKEW_S) * 1000);
        if self.last_seen_ms > newest || self.last_seen_ms < oldest {
            return Err("last_seen_ms: not within the last run_ttl_s of control's clock".into());
        }
        if self.started_ms > self.last_seen_ms {
            return Err("started_ms: after last_seen_ms".into());
        }
        if self.ttl_s == 0 || self.ttl_s > MAX_TTL_S {
            return Err(format!("ttl_s: between 1 and {MAX_TTL_S}"));
        }
        if self.steps > MAX_COUNT || self.tokens > MAX_COUNT {
            return Err(format!("steps and tokens: at most {MAX_COUNT}"));
        }
        Ok(())
    }
}

impl Entry for RunPart {
    fn retained(&self, now_ms: u64) -> bool {
        now_ms <= self.last_seen_ms.saturating_add(self.ttl_s.saturating_mul(1000))
    }

    fn add(&mut self, other: &RunPart, _now_ms: u64) {
        self.steps = self.steps.saturating_add(other.steps);
        self.tokens = self.tokens.saturating_add(other.tokens);
        self.started_ms = RunPart::earliest(self.started_ms, other.started_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.ttl_s = self.ttl_s.max(other.ttl_s);
    }

    fn seen_ms(&self) -> u64 {
        self.last_seen_ms
    }
}

/// A run tree's part on the wire, named `tenant/root-run-id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunUsage {
    pub run: String,
    pub part: RunPart,
}

/// The fleet name of `tenant`'s run tree rooted at `root`.
pub fn run_name(tenant: &str, root: &str) -> String {
    format!("{tenant}/{root}")
}

/// The tenant and root run id of a fleet run name, if it is one.
pub fn parse_run_name(name: &str) -> Option<(&str, &str)> {
    let (tenant, root) = name.split_once('/')?;
    (is_valid_tenant_id(tenant) && is_valid_run_id(root)).then_some((tenant, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::others;

    const NOW_MS: u64 = 1_795_428_000_000;

    fn part(steps: u64, started_ms: u64, last_seen_ms: u64) -> RunPart {
        RunPart { steps, tokens: steps * 100, started_ms, last_seen_ms, ttl_s: 600 }
    }

    #[test]
    fn a_sum_adds_steps_and_tokens_and_spans_the_earliest_start_to_the_latest_sighting() {
        let (a, b) = (part(3, NOW_MS - 5_000, NOW_MS - 1_000), part(2, NOW_MS - 9_000, NOW_MS));
        let mine = part(50, 1, NOW_MS);
        let got = others([("a/1", &a), ("b/1", &b), ("me/1", &mine)], "me/1", NOW_MS);
        assert_eq!(
            got.usage,
            RunPart { steps: 5, tokens: 500, started_ms: NOW_MS - 9_000, last_seen_ms: NOW_MS, ttl_s: 600 }
        );
    }

    #[test]
    fn a_part_expires_once_its_envoy_has_not_seen_the_run_for_its_ttl() {
        let (old, fresh) = (part(3, NOW_MS - 700_000, NOW_MS - 600_001), part(1, NOW_MS, NOW_MS));
        let got = others([("a/1", &old), ("b/1", &fresh)], "me/1", NOW_MS);
        assert_eq!((got.usage.steps, got.expired), (1, vec!["a/1"]));
    }

    #[test]
    fn forged_times_and_counts_are_refused() {
        assert_eq!(part(1, NOW_MS - 10, NOW_MS).validate(NOW_MS), Ok(()));
        assert!(part(1, NOW_MS, NOW_MS + 3_600_000).validate(NOW_MS).is_err(), "seen in the future");
        assert!(part(1, NOW_MS, NOW_MS - 1).validate(NOW_MS).is_err(), "started after it was last seen");
        assert!(RunPart { ttl_s: 0, ..part(1, NOW_MS, NOW_MS) }.validate(NOW_MS).is_err());
        assert!(RunPart { steps: u64::MAX, ..part(1, NOW_MS, NOW_MS) }.validate(NOW_MS).is_err());
    }

    #[test]
    fn run_names_are_a_tenant_and_a_run_id() {
        assert_eq!(parse_run_name(&run_name("acme", "run-1")), Some(("acme", "run-1")));
        assert_eq!(parse_run_name("acme"), None);
        assert_eq!(parse_run_name("acme/a/b"), None);
        assert_eq!(parse_run_name("ac me/r"), None);
        assert_eq!(RunPart::earliest(0, 5), 5);
        assert_eq!(RunPart::earliest(7, 5), 5);
    }
}
