//! The sweep of the tenant state table and the run table: removes the states that no longer
//! matter (see `fusebox_engine::state::entry`), keeps only the budget of those whose budget
//! alone does, and removes run records idle past their ttl. Reading a bucket is a hostcall, so
//! the sweep reads only the buckets that hold something: the workers tell the singleton each
//! bucket they add to (`claims.rs`), and it keeps one bit per bucket. Each bucket held is looked
//! at once per `sweep_pass_ms`. Every bucket is also read, slowly, once per [`LAP_MS`], so an
//! addition that never reached the singleton is found all the same; a singleton started in an
//! Envoy whose shared data it did not see filled (a reload) reads them all over [`DISCOVERY_MS`]
//! first.

use crate::claims::{self, Table};
use crate::host;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::runs;
use crate::states;
use crate::store::Keys;
use fusebox_engine::run::RUN_BUCKETS;
use fusebox_engine::state::entry::BUCKETS;
use std::rc::Rc;

/// Buckets read in one tick at most (a late tick does not sweep a whole pass at once).
const MAX_PER_TICK: u64 = 16 * 1024;
/// How long the read of every bucket takes after a reload.
pub const DISCOVERY_MS: u64 = 600_000;
/// How long the background read of every bucket takes otherwise (about 9 buckets a second).
pub const LAP_MS: u64 = 6 * 3_600_000;

/// One bit per bucket of a table: set while the bucket may hold something.
struct Occupied {
    words: Vec<u64>,
    count: u64,
    /// The next bucket the sweep looks at.
    cursor: u64,
}

impl Occupied {
    fn new(buckets: u64) -> Occupied {
        Occupied { words: vec![0; usize::try_from(buckets.div_ceil(64)).unwrap_or(0)], count: 0, cursor: 0 }
    }

    fn buckets(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn set(&mut self, bucket: u64) {
        if let Some(w) = self.words.get_mut(usize::try_from(bucket / 64).unwrap_or(usize::MAX)) {
            let bit = 1u64 << (bucket % 64);
            if *w & bit == 0 {
                *w |= bit;
                self.count += 1;
            }
        }
    }

    fn clear(&mut self, bucket: u64) {
        if let Some(w) = self.words.get_mut(usize::try_from(bucket / 64).unwrap_or(usize::MAX)) {
            let bit = 1u64 << (bucket % 64);
            if *w & bit != 0 {
                *w &= !bit;
                self.count -= 1;
            }
        }
    }

    /// Up to `most` set buckets from the cursor on, at most one lap of the table; moves the cursor.
    fn next(&mut self, most: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let buckets = self.buckets();
        let mut looked = 0;
        while looked < buckets && (out.len() as u64) < most && self.count > 0 {
            let at = self.cursor;
            let word = self.words.get(usize::try_from(at / 64).unwrap_or(0)).copied().unwrap_or(0);
            if word == 0 || (word >> (at % 64)) == 0 {
                // Nothing set in the rest of this word: on to the next one.
                let next = (at / 64 + 1) * 64;
                looked += next - at;
                self.cursor = next % buckets;
                continue;
            }
            if word & (1 << (at % 64)) != 0 {
                out.push(at);
            }
            looked += 1;
            self.cursor = (at + 1) % buckets;
        }
        out
    }
}

pub struct StateSweeper {
    keys: Keys,
    metrics: Rc<Metrics>,
    pass_ms: u64,
    queue: Option<u32>,
    states: Occupied,
    runs: Occupied,
    /// States in each bucket of the state table as of its last sweep, and their sum.
    counts: Vec<u8>,
    states_held: u64,
    /// The slow read of every bucket: the next bucket, and how long a lap takes.
    discovery: u64,
    lap_ms: u64,
    last_ms: u64,
    held: Gauge,
}

impl StateSweeper {
    pub fn new(keys: Keys, metrics: Rc<Metrics>, pass_ms: u64) -> StateSweeper {
        StateSweeper {
            keys,
            metrics,
            pass_ms: pass_ms.max(1),
            queue: None,
            states: Occupied::new(BUCKETS),
            runs: Occupied::new(RUN_BUCKETS),
            counts: vec![0; usize::try_from(BUCKETS).unwrap_or(0)],
            states_held: 0,
            discovery: 0,
            lap_ms: LAP_MS,
            last_ms: 0,
            held: Gauge::define("fusebox.state.held"),
        }
    }

    /// Registers the workers' claim queue; after a reload, starts reading every bucket once.
    pub fn start(&mut self, namespace: &str) {
        self.queue = host::register_queue(&claims::queue_name(namespace));
        let marker = &self.keys.sweep_marker;
        if matches!(host::shared_get(marker), Ok((Some(_), _))) {
            log::info!("finding the buckets held in shared data over {} s (a reload)", DISCOVERY_MS / 1000);
            self.lap_ms = DISCOVERY_MS;
        } else if let Err(s) = host::shared_set(marker, b"1", None) {
            log::warn!("marking the state tables as swept failed: {s:?}");
        }
    }

    pub fn owns_queue(&self, queue: u32) -> bool {
        self.queue == Some(queue)
    }

    /// Takes in the buckets the workers added to.
    pub fn drain_queue(&mut self) {
        let Some(queue) = self.queue else { return };
        while let Some(bytes) = host::dequeue(queue) {
            for (table, n) in claims::decode(&bytes) {
                match table {
                    Table::States => self.states.set(n),
                    Table::Runs => self.runs.set(n),
                }
            }
        }
    }

    pub fn on_tick(&mut self, now_ms: u64) {
        self.drain_queue();
        if self.last_ms == 0 {
            self.last_ms = now_ms;
            return;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        self.discover(elapsed);
        // Every bucket held once per pass (and at least a few a tick, so a small table keeps up).
        let pass_ms = self.pass_ms;
        let share = |held: u64| (held.saturating_mul(elapsed) / pass_ms).clamp(16, MAX_PER_TICK);
        let (mut freed, mut compacted) = (0, 0);
        for n in self.states.next(share(self.states.count)) {
            let Some(swept) = states::sweep(&self.keys, n, now_ms) else { continue };
            if swept.held == 0 {
                self.states.clear(n);
            }
            self.count(n, swept.held);
            freed += swept.dropped as u64;
            compacted += swept.changed as u64;
        }
        let mut runs_freed = 0;
        for n in self.runs.next(share(self.runs.count)) {
            let Some(swept) = runs::sweep(&self.keys, n, now_ms) else { continue };
            if swept.held == 0 {
                self.runs.clear(n);
            }
            runs_freed += swept.dropped as u64;
        }
        for (counter, n) in
            [(Counter::StateFreed, freed), (Counter::StateCompacted, compacted), (Counter::RunsFreed, runs_freed)]
        {
            if n > 0 {
                self.metrics.add(counter, n);
            }
        }
        self.held.set(self.states_held);
    }

    /// Records that bucket `n` holds `held` states now.
    fn count(&mut self, n: u64, held: usize) {
        if let Some(c) = self.counts.get_mut(usize::try_from(n).unwrap_or(usize::MAX)) {
            let held = u8::try_from(held).unwrap_or(u8::MAX);
            self.states_held = self.states_held.saturating_sub(u64::from(*c)).saturating_add(u64::from(held));
            *c = held;
        }
    }

    /// Reads the next share of every bucket, marking the ones that hold something.
    fn discover(&mut self, elapsed: u64) {
        let from = self.discovery;
        let total = BUCKETS + RUN_BUCKETS;
        let count = (elapsed.saturating_mul(total) / self.lap_ms).clamp(1, MAX_PER_TICK);
        let until = from.saturating_add(count).min(total);
        for n in from..until {
            let (key, occupied) = if n < BUCKETS {
                (self.keys.state_bucket(n), &mut self.states)
            } else {
                (self.keys.run_bucket(n - BUCKETS), &mut self.runs)
            };
            if matches!(host::shared_get(&key), Ok((Some(v), _)) if !v.is_empty()) {
                occupied.set(if n < BUCKETS { n } else { n - BUCKETS });
            }
        }
        self.discovery = until % total;
        if until == total && self.lap_ms == DISCOVERY_MS {
            log::info!(
                "found {} buckets of tenant states and {} of run records held",
                self.states.count,
                self.runs.count
            );
            self.lap_ms = LAP_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_visits_only_the_buckets_set_and_each_once_a_lap() {
        let mut o = Occupied::new(256);
        for s in [3, 64, 65, 200] {
            o.set(s);
        }
        o.set(3);
        assert_eq!(o.count, 4);
        assert_eq!(o.next(2), [3, 64]);
        assert_eq!(o.next(10), [65, 200, 3, 64], "one lap at most, from where it stopped");
        o.clear(64);
        assert_eq!(o.next(10), [65, 200, 3]);
        o.clear(3);
        o.clear(65);
        o.clear(200);
        assert_eq!((o.count, o.next(10)), (0, vec![]));
    }
}
