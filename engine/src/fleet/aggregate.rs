//! Control's half of a sync, over the entries stored for one key: the sum of every other
//! Envoy's usage, and which entries no longer matter (their owner stopped syncing long ago).

use super::FleetUsage;

/// What control stores per (key, Envoy) and sums over the other Envoys.
pub trait Entry: Default {
    /// Whether the entry still counts at `now_ms` (else it can be deleted).
    fn retained(&self, now_ms: u64) -> bool;
    /// Adds `other` into this sum as of `now_ms`.
    fn add(&mut self, other: &Self, now_ms: u64);
    /// When its Envoy last vouched for it (the newest entries are kept when space runs out).
    fn seen_ms(&self) -> u64;
}

impl Entry for FleetUsage {
    fn retained(&self, now_ms: u64) -> bool {
        FleetUsage::retained(self, now_ms)
    }

    fn add(&mut self, other: &FleetUsage, now_ms: u64) {
        FleetUsage::add(self, other, now_ms);
    }

    fn seen_ms(&self) -> u64 {
        self.as_of_ms
    }
}

/// What one key's stored entries amount to for the Envoy that asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Others<'a, E> {
    pub usage: E,
    /// Instances whose entries can be deleted.
    pub expired: Vec<&'a str>,
}

/// Sums the entries of every instance but `me` as of `now_ms`, and names the expired ones.
pub fn others<'a, E: Entry + 'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a E)>,
    me: &str,
    now_ms: u64,
) -> Others<'a, E> {
    let mut out = Others { usage: E::default(), expired: Vec::new() };
    for (instance, usage) in entries {
        if !usage.retained(now_ms) {
            out.expired.push(instance);
        } else if instance != me {
            out.usage.add(usage, now_ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::RETAIN_WINDOWS_MS;

    const NOW_MS: u64 = 1_795_428_000_000;

    fn entry(tokens: u64, as_of_ms: u64) -> FleetUsage {
        let mut u = FleetUsage { in_flight: 1, as_of_ms, ..FleetUsage::default() };
        u.tokens.add(as_of_ms / 1000, tokens);
        u
    }

    #[test]
    fn an_envoy_gets_everyone_elses_usage_and_never_its_own() {
        let (a, b, c) = (entry(100, NOW_MS), entry(20, NOW_MS), entry(3, NOW_MS));
        let got = others([("a/1", &a), ("b/1", &b), ("c/1", &c)], "b/1", NOW_MS);
        assert_eq!(got.usage.tokens.sum(NOW_MS / 1000, 10), 103);
        assert_eq!(got.usage.in_flight, 2);
        assert!(got.expired.is_empty());
    }

    #[test]
    fn entries_of_envoys_gone_for_longer_than_the_windows_expire() {
        let gone = entry(100, NOW_MS - RETAIN_WINDOWS_MS - 1);
        let here = entry(5, NOW_MS);
        let got = others([("gone/1", &gone), ("here/1", &here)], "me/1", NOW_MS);
        assert_eq!(got.expired, vec!["gone/1"]);
        assert_eq!(got.usage.tokens.sum(NOW_MS / 1000, 60), 5);
    }
}
