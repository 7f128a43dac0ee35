//! Whether an Envoy counts with the fleet or alone: after `fallback_after_ms` without a
//! successful sync it falls back to its local share of every limit, and returns to fleet
//! counting with the next sync that succeeds.

/// How the Envoy's workers judge the fleet-wide limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Local usage plus the rest of the fleet's, against the whole limit.
    Fleet,
    /// Fleet counts unavailable: local usage (and the last known fleet usage) against a share.
    LocalShare,
}

#[derive(Debug, Clone)]
pub struct SyncHealth {
    fallback_after_ms: u64,
    last_ok_ms: u64,
    counting: Counting,
}

impl SyncHealth {
    /// Starts in fleet counting, as if a sync had just succeeded: a fresh Envoy gets its
    /// first `fallback_after_ms` to reach control.
    pub fn new(now_ms: u64, fallback_after_ms: u64) -> SyncHealth {
        SyncHealth { fallback_after_ms, last_ok_ms: now_ms, counting: Counting::Fleet }
    }

    pub fn counting(&self) -> Counting {
        self.counting
    }

    /// A sync succeeded; `Some` when that ends a fallback.
    pub fn succeeded(&mut self, now_ms: u64) -> Option<Counting> {
        self.last_ok_ms = self.last_ok_ms.max(now_ms);
        self.switch(Counting::Fleet)
    }

    /// Checked on every tick; `Some` when syncs have failed for too long.
    pub fn check(&mut self, now_ms: u64) -> Option<Counting> {
        if now_ms.saturating_sub(self.last_ok_ms) > self.fallback_after_ms {
            self.switch(Counting::LocalShare)
        } else {
            None
        }
    }

    fn switch(&mut self, to: Counting) -> Option<Counting> {
        (self.counting != to).then(|| {
            self.counting = to;
            to
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_syncs_fall_back_once_and_the_next_success_returns() {
        let mut h = SyncHealth::new(0, 1000);
        assert_eq!(h.check(1000), None, "within the allowance");
        assert_eq!(h.check(1001), Some(Counting::LocalShare));
        assert_eq!(h.check(5000), None, "said once");
        assert_eq!(h.counting(), Counting::LocalShare);
        assert_eq!(h.succeeded(5100), Some(Counting::Fleet));
        assert_eq!(h.succeeded(5350), None);
        assert_eq!(h.check(6000), None);
    }
}
