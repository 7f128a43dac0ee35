//! The sweep of the tenant state table and the run table: one pass over every slot of each per
//! `sweep_pass_ms`, freeing the slots whose state no longer matters (see
//! `fusebox_engine::state::slot`) and the run records idle past their ttl. Runs on Envoy's main
//! thread, a share of the table per tick, so no worker ever pays for it.

use crate::metrics::{Counter, Gauge, Metrics};
use crate::runs;
use crate::states;
use crate::store::Keys;
use fusebox_engine::run::RUN_SLOTS;
use fusebox_engine::state::slot::SLOTS;
use std::rc::Rc;

/// Slots looked at in one tick at most (a late tick does not sweep a whole pass at once).
const MAX_PER_TICK: u64 = 64 * 1024;

pub struct StateSweeper {
    keys: Keys,
    metrics: Rc<Metrics>,
    pass_ms: u64,
    cursor: u64,
    run_cursor: u64,
    last_ms: u64,
    /// States held among the slots swept so far in this pass.
    held_in_pass: u64,
    held: Gauge,
}

impl StateSweeper {
    pub fn new(keys: Keys, metrics: Rc<Metrics>, pass_ms: u64) -> StateSweeper {
        StateSweeper {
            keys,
            metrics,
            pass_ms: pass_ms.max(1),
            cursor: 0,
            run_cursor: 0,
            last_ms: 0,
            held_in_pass: 0,
            held: Gauge::define("fusebox.state.held"),
        }
    }

    pub fn on_tick(&mut self, now_ms: u64) {
        if self.last_ms == 0 {
            self.last_ms = now_ms;
            return;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let count = (elapsed.saturating_mul(SLOTS) / self.pass_ms).min(MAX_PER_TICK);
        if count == 0 {
            return;
        }
        self.last_ms = now_ms;
        let start = self.cursor;
        let swept = states::sweep(&self.keys, &mut self.cursor, count, now_ms);
        self.held_in_pass += swept.held;
        if swept.freed > 0 {
            self.metrics.add(Counter::StateFreed, swept.freed);
        }
        if swept.compacted > 0 {
            self.metrics.add(Counter::StateCompacted, swept.compacted);
        }
        if start + count >= SLOTS {
            // A pass is complete: what it found held is the table's occupancy.
            self.held.set(self.held_in_pass);
            self.held_in_pass = 0;
        }
        let runs = (elapsed.saturating_mul(RUN_SLOTS) / self.pass_ms).min(MAX_PER_TICK);
        let freed = runs::sweep(&self.keys, &mut self.run_cursor, runs, now_ms);
        if freed > 0 {
            self.metrics.add(Counter::RunsFreed, freed);
        }
    }
}
