//! The filter's per-worker root: its configuration and the policy in force, picked up from the
//! singleton's publication in shared data.

use crate::active::ActivePolicy;
use crate::claims::Claims;
use crate::events::Reporter;
use crate::fleet_keys::FleetKeys;
use crate::host;
use crate::metrics::{Counter, MemoryGauge, Metrics};
use crate::request::{Request, Worker};
use crate::store::{self, Keys};
use fusebox_engine::config::{FilterConfig, Mode};
use fusebox_engine::policy::{Policy, PolicyError};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often a worker looks for a newly published policy (the delay a kill switch or a
/// lowered limit adds on top of the singleton's poll), hands its used keys to the fleet sync
/// and reads the share of the limits it enforces.
const POLICY_CHECK_MS: u64 = 100;
/// Events, batched counters and the memory gauge go out every this many policy checks (1 s).
const FLUSH_EVERY_TICKS: u64 = 10;

/// Per-plugin state shared by all of a worker's requests.
pub struct FilterRoot {
    worker: Rc<Worker>,
    active: RefCell<Rc<ActivePolicy>>,
    seen_generation: Cell<Option<u64>>,
    memory: MemoryGauge,
    ticks: Cell<u64>,
}

impl FilterRoot {
    pub fn new(config: FilterConfig, metrics: Rc<Metrics>) -> Result<FilterRoot, PolicyError> {
        let active = ActivePolicy::new(config.policy.clone())?;
        if config.routes.is_empty() && config.unmatched == Mode::Pass {
            log::warn!("no route rules and unmatched=pass: this filter passes all traffic untouched");
        }
        let worker = Worker {
            reporter: Reporter::new(&config.namespace, Rc::clone(&metrics)),
            keys: Keys::new(&config.namespace),
            fleet_keys: FleetKeys::new(&config.namespace),
            claims: Claims::new(&config.namespace),
            fleet_share: Cell::new(1),
            tick_ms: Cell::new(0),
            config,
            metrics,
        };
        Ok(FilterRoot {
            worker: Rc::new(worker),
            active: RefCell::new(Rc::new(active)),
            seen_generation: Cell::new(None),
            memory: MemoryGauge::define("fusebox.worker.wasm_memory_bytes"),
            ticks: Cell::new(0),
        })
    }

    /// Starts the worker's timer: policy checks, and flushing what requests only collect
    /// locally (events, busy counters), so that a request costs no hostcall for them.
    pub fn start(&self) {
        host::set_tick_period(std::time::Duration::from_millis(POLICY_CHECK_MS));
        self.refresh_policy();
    }

    pub fn on_tick(&self) {
        self.refresh_policy();
        let w = &self.worker;
        let now_ms = host::now_ms();
        w.tick_ms.set(now_ms);
        w.fleet_keys.flush(now_ms);
        w.claims.flush();
        w.fleet_share.set(store::fleet_share(&w.keys));
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks % FLUSH_EVERY_TICKS == 0 {
            self.worker.reporter.flush(host::now_ms());
            self.worker.metrics.flush();
            self.memory.report();
        }
    }

    /// Picks up a policy the singleton published (one 8-byte shared-data read per check, on
    /// the tick rather than per request: hostcalls are the filter's main cost).
    fn refresh_policy(&self) {
        let Some(generation) = store::policy_generation(&self.worker.keys) else { return };
        if self.seen_generation.get() == Some(generation) {
            return;
        }
        self.seen_generation.set(Some(generation));
        let Some(json) = store::published_policy(&self.worker.keys) else { return };
        match Policy::from_json(&json).and_then(ActivePolicy::new) {
            Ok(active) => {
                log::info!("policy version {} active", active.policy.version);
                *self.active.borrow_mut() = Rc::new(active);
                self.worker.metrics.inc(Counter::PolicyUpdates);
            }
            Err(e) => {
                log::error!("published policy rejected, keeping the current one: {e}");
                self.worker.metrics.inc(Counter::PolicyRejected);
            }
        }
    }

    pub fn new_request(&self) -> Request {
        Request::new(Rc::clone(&self.worker), Rc::clone(&self.active.borrow()))
    }
}
