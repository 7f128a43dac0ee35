//! The tiers a policy gets when it defines none.

use super::limits::{BreakerSettings, Limits};
use std::collections::BTreeMap;

pub(crate) fn default_tier_name() -> String {
    "free".to_string()
}

/// Shipped tiers, used when a policy does not define `tiers`.
pub fn default_tiers() -> BTreeMap<String, Limits> {
    let tier = |t10: u64, t60: u64, r10: u64, tools: u64, concurrency: u64, cooldown_s: u32, run_steps: u64| Limits {
        tokens_10s: Some(t10),
        tokens_60s: Some(t60),
        requests_10s: Some(r10),
        tool_calls_60s: Some(tools),
        error_ratio: Some(0.5),
        concurrency: Some(concurrency),
        run_steps: Some(run_steps),
        run_depth: Some(4),
        run_duration_s: Some(3600),
        breaker: BreakerSettings { cooldown_s, ..BreakerSettings::default() },
        ..Limits::default()
    };
    BTreeMap::from([
        ("free".to_string(), tier(20_000, 60_000, 20, 60, 4, 30, 50)),
        ("pro".to_string(), tier(200_000, 600_000, 100, 600, 32, 15, 500)),
        ("enterprise".to_string(), tier(2_000_000, 6_000_000, 1000, 6000, 256, 10, 5000)),
    ])
}
