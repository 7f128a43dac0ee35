//! Fleet counters in this process: right for one control replica in front of any number of
//! Envoys. Bounded: entries expire with their owner's windows, budgets and runs, and past
//! [`MAX_KEYS`] names the ones synced longest ago are dropped.

use super::Synced;
use fusebox_engine::fleet::wire::{SyncReply, SyncRequest};
use fusebox_engine::fleet::{others, Entry, FleetUsage, RunPart};
use std::collections::HashMap;
use std::sync::Mutex;

/// Names per table (state keys, and runs apart).
const MAX_KEYS: usize = 1_000_000;
/// How often every name is swept for expired entries (names nobody syncs any more).
const SWEEP_EVERY_MS: u64 = 60_000;

/// Every Envoy's entry for every name of one kind.
struct Table<E> {
    by_name: HashMap<String, HashMap<String, E>>,
}

impl<E> Default for Table<E> {
    fn default() -> Self {
        Table { by_name: HashMap::new() }
    }
}

impl<E: Entry + Clone> Table<E> {
    /// Stores `instance`'s entry for each item and answers each with the others' sum.
    fn sync<S: Synced<Entry = E>>(&mut self, items: &[S], instance: &str, now_ms: u64) -> Vec<S> {
        let mut answers = Vec::with_capacity(items.len());
        for item in items {
            let instances = self.by_name.entry(item.name().to_string()).or_default();
            instances.insert(instance.to_string(), S::entry(item.stored(now_ms)));
            let sum = others(instances.iter().map(|(i, u)| (i.as_str(), u)), instance, now_ms);
            answers.push(S::answer(item.name(), &sum.usage));
            let expired: Vec<String> = sum.expired.into_iter().map(str::to_string).collect();
            expired.iter().for_each(|i| {
                instances.remove(i);
            });
        }
        answers
    }

    fn sweep(&mut self, now_ms: u64) {
        self.by_name.retain(|_, instances| {
            instances.retain(|_, u| u.retained(now_ms));
            !instances.is_empty()
        });
        if self.by_name.len() > MAX_KEYS {
            let mut ages: Vec<(u64, String)> = self
                .by_name
                .iter()
                .map(|(k, i)| (i.values().map(Entry::seen_ms).max().unwrap_or(0), k.clone()))
                .collect();
            ages.sort_unstable();
            let excess = self.by_name.len() - MAX_KEYS;
            for (_, k) in ages.into_iter().take(excess) {
                self.by_name.remove(&k);
            }
        }
    }
}

#[derive(Default)]
struct Entries {
    keys: Table<FleetUsage>,
    runs: Table<RunPart>,
    last_sweep_ms: u64,
}

#[derive(Default)]
pub struct MemoryFleet {
    entries: Mutex<Entries>,
}

impl MemoryFleet {
    pub(super) fn sync(&self, req: &SyncRequest, now_ms: u64) -> SyncReply {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let keys = e.keys.sync(&req.keys, &req.instance, now_ms);
        let runs = e.runs.sync(&req.runs, &req.instance, now_ms);
        let crowded = e.keys.by_name.len() > MAX_KEYS || e.runs.by_name.len() > MAX_KEYS;
        if now_ms.saturating_sub(e.last_sweep_ms) >= SWEEP_EVERY_MS || crowded {
            e.last_sweep_ms = now_ms;
            e.keys.sweep(now_ms);
            e.runs.sweep(now_ms);
        }
        SyncReply { keys, runs }
    }

    /// Names held, state keys and runs (for tests and metrics).
    pub fn keys(&self) -> (usize, usize) {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        (e.keys.by_name.len(), e.runs.by_name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::fleet::wire::{KeyUsage, WireUsage};
    use fusebox_engine::fleet::{RunUsage, RETAIN_WINDOWS_MS};

    const NOW_MS: u64 = 1_795_428_000_000;
    const NOW: u64 = NOW_MS / 1000;

    fn request(instance: &str) -> SyncRequest {
        let node = instance.split('/').next().unwrap_or_default().to_string();
        SyncRequest { node, instance: instance.into(), keys: vec![], runs: vec![] }
    }

    fn sync(f: &MemoryFleet, instance: &str, tokens: u32, now_ms: u64) -> Vec<KeyUsage> {
        let usage = WireUsage { tokens: vec![(NOW, tokens)], in_flight: 1, ..Default::default() };
        let req = SyncRequest { keys: vec![KeyUsage { key: "acme".into(), usage }], ..request(instance) };
        f.sync(&req, now_ms).keys
    }

    fn sync_run(f: &MemoryFleet, instance: &str, steps: u64, now_ms: u64) -> Vec<RunUsage> {
        let part = RunPart { steps, tokens: 0, started_ms: now_ms, last_seen_ms: now_ms, ttl_s: 60 };
        let req = SyncRequest { runs: vec![RunUsage { run: "acme/r1".into(), part }], ..request(instance) };
        f.sync(&req, now_ms).runs
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
        sync_run(&f, "a/1", 2, NOW_MS);
        assert_eq!(f.keys(), (1, 1));
        let later = NOW_MS + RETAIN_WINDOWS_MS + SWEEP_EVERY_MS;
        f.sync(&request("b/1"), later);
        assert_eq!(f.keys(), (0, 0), "the run's ttl (60 s) is over as well");
    }

    #[test]
    fn each_envoy_is_told_the_other_envoys_part_of_a_run() {
        let f = MemoryFleet::default();
        sync_run(&f, "a/1", 3, NOW_MS);
        sync_run(&f, "c/1", 4, NOW_MS);
        let b = sync_run(&f, "b/1", 1, NOW_MS);
        assert_eq!((b[0].run.as_str(), b[0].part.steps), ("acme/r1", 7));
        assert_eq!(sync_run(&f, "a/1", 5, NOW_MS + 250)[0].part.steps, 5, "b's 1 and c's 4, never a's own");
    }
}
