//! The conservative fallback when fleet counts are unavailable: each Envoy enforces its share
//! of every velocity limit, so N Envoys together stay within the limit without seeing each other.

use crate::policy::Limits;

/// `limits` with every window and the concurrency cap divided by `envoys` (rounded up, never
/// below 1). Budgets are left whole: each Envoy still has the fleet's spending up to the last
/// sync, so their overshoot is what the rest of the fleet spends while it cannot sync.
pub fn local_share(limits: &Limits, envoys: u32) -> Limits {
    if envoys <= 1 {
        return limits.clone();
    }
    let n = u64::from(envoys);
    let part = |v: Option<u64>| v.map(|v| v.div_ceil(n).max(1));
    Limits {
        tokens_10s: part(limits.tokens_10s),
        tokens_60s: part(limits.tokens_60s),
        requests_10s: part(limits.requests_10s),
        tool_calls_60s: part(limits.tool_calls_60s),
        concurrency: part(limits.concurrency),
        ..limits.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_envoy_gets_its_share_of_every_window_rounded_up() {
        let l = Limits {
            tokens_60s: Some(1000),
            requests_10s: Some(10),
            concurrency: Some(2),
            budget_tokens_day: Some(5000),
            ..Limits::default()
        };
        let s = local_share(&l, 3);
        assert_eq!((s.tokens_60s, s.requests_10s, s.concurrency), (Some(334), Some(4), Some(1)));
        assert_eq!(s.budget_tokens_day, Some(5000), "budgets stay whole");
        assert_eq!(s.tokens_10s, None, "no limit stays no limit");
        assert_eq!(local_share(&l, 1), l);
    }
}
