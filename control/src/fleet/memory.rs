//! Fleet counters in this process: right for one control replica in front of any number of
//! Envoys. Bounded: entries expire with their owner's windows and budgets, and past
//! [`MAX_KEYS`] keys the ones synced longest ago are dropped.

use super::answer;
use fusebox_engine::fleet::wire::{KeyUsage, SyncRequest};
use fusebox_engine::fleet::{others, FleetUsage};
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_KEYS: usize = 1_000_000;
/// How often every key is swept for expired entries (keys nobody syncs any more).
const SWEEP_EVERY_MS: u64 = 60_000;

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, HashMap<String, FleetUsage>>,
    last_sweep_ms: u64,
}

#[derive(Default)]
pub struct MemoryFleet {
    entries: Mutex<Entries>,
}

impl MemoryFleet {
    pub(super) fn sync(&self, req: &SyncRequest, now_ms: u64) -> Vec<KeyUsage> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut answers = Vec::with_capacity(req.keys.len());
        for k in &req.keys {
            let instances = e.by_key.entry(k.key.clone()).or_default();
            instances.insert(req.instance.clone(), k.usage.to_usage(now_ms));
            let sum = others(instances.iter().map(|(i, u)| (i.as_str(), u)), &req.instance, now_ms);
            answers.push(answer(&k.key, &sum.usage));
            let expired: Vec<String> = sum.expired.into_iter().map(str::to_string).collect();
            expired.iter().for_each(|i| {
                instances.remove(i);
            });
        }
        if now_ms.saturating_sub(e.last_sweep_ms) >= SWEEP_EVERY_MS || e.by_key.len() > MAX_KEYS {
            e.last_sweep_ms = now_ms;
            sweep(&mut e.by_key, now_ms);
        }
        answers
    }

    /// Keys held (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).by_key.len()
    }
}

fn sweep(by_key: &mut HashMap<String, HashMap<String, FleetUsage>>, now_ms: u64) {
    by_key.retain(|_, instances| {
        instances.retain(|_, u| u.retained(now_ms));
        !instances.is_empty()
    });
    if by_key.len() > MAX_KEYS {
        let mut ages: Vec<(u64, String)> =
            by_key.iter().map(|(k, i)| (i.values().map(|u| u.as_of_ms).max().unwrap_or(0), k.clone())).collect();
        ages.sort_unstable();
        let excess = by_key.len() - MAX_KEYS;
        for (_, k) in ages.into_iter().take(excess) {
            by_key.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::fleet::wire::WireUsage;
    use fusebox_engine::fleet::RETAIN_WINDOWS_MS;

    const NOW_MS: u64 = 1_795_428_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn sync(f: &MemoryFleet, instance: &str, tokens: u32, now_ms: u64) -> Vec<KeyUsage> {
        let usage = WireUsage { tokens: vec![(NOW, tokens)], in_flight: 1, ..Default::default() };
        let node = instance.split('/').next().unwrap_or_default().to_string();
        let req = SyncRequest { node, instance: instance.into(), keys: vec![KeyUsage { key: "acme".into(), usage }] };
        f.sync(&req, now_ms)
    }

    #[test]
    fn each_envoy_is_told_the_others_usage_and_a_repeated_sync_counts_once() {
        let f = MemoryFleet::default();
        sync(&f, "a/1", 100, NOW_MS);
        sync(&f, "a/1", 100, NOW_MS); // a retry of the same absolute usage
        let b = sync(&f, "b/1", 7, NOW_MS);
        assert_eq!(b[0].usage.tokens, vec![(NOW, 100)]);
        assert_eq!(b[0].usage.in_flight, 1);
        let a = sync(&f, "a/1", 150, NOW_MS + 250);
        assert_eq!(a[0].usage.tokens, vec![(NOW, 7)]);
    }

    #[test]
    fn keys_of_envoys_gone_past_the_windows_are_swept() {
        let f = MemoryFleet::default();
        sync(&f, "a/1", 100, NOW_MS);
        assert_eq!(f.keys(), 1);
        let later = NOW_MS + RETAIN_WINDOWS_MS + SWEEP_EVERY_MS;
        let req = SyncRequest { node: "b".into(), instance: "b/1".into(), keys: vec![] };
        f.sync(&req, later);
        assert_eq!(f.keys(), 0);
    }
}
