//! The background singleton (`envoy.bootstrap.wasm`, same vm_id as the filter): the policy
//! poller (`poller.rs`) keeps the workers' policy current, the event shipper (`shipper.rs`)
//! takes their events to control, and the fleet sync (`fleet.rs`), when configured, trades
//! usage with the rest of the fleet, and the sweeper (`sweeper.rs`) removes the tenant states
//! that no longer matter. All run on the singleton's tick; none can stop traffic.

mod call;
mod fleet;
mod poller;
mod shipper;
mod sweeper;

use crate::host;
use crate::metrics::{MemoryGauge, Metrics};
use crate::store::Keys;
use call::ControlCalls;
use fleet::FleetSync;
use fusebox_engine::config::SingletonConfig;
use poller::{PolicyPoller, Polled};
use shipper::EventShipper;
use std::rc::Rc;
use std::time::Duration;
use sweeper::StateSweeper;

/// Until control's first policy arrives, poll this often (for at most [`START_FAST_TICKS`]
/// ticks): after a start or a hot restart the workers enforce the fallback policy from the
/// Envoy configuration until then, so that window should be short.
const START_TICK_MS: u64 = 50;
const START_FAST_TICKS: u32 = 40;

pub struct SingletonRoot {
    namespace: String,
    calls: ControlCalls,
    poller: PolicyPoller,
    shipper: EventShipper,
    fleet: Option<FleetSync>,
    sweeper: StateSweeper,
    memory: MemoryGauge,
    /// Ticks left at the start-up cadence (see [`START_TICK_MS`]); 0 once the first policy is in.
    fast_ticks_left: u32,
    /// The next tick at which the poller may poll (the tick may be faster, for the fleet).
    next_poll_ms: u64,
}

impl SingletonRoot {
    pub fn new(config: SingletonConfig, metrics: Rc<Metrics>) -> SingletonRoot {
        let keys = Keys::new(&config.namespace);
        SingletonRoot {
            poller: PolicyPoller::new(keys.clone(), Rc::clone(&metrics)),
            shipper: EventShipper::new(&config.control, Rc::clone(&metrics)),
            sweeper: StateSweeper::new(keys.clone(), Rc::clone(&metrics), config.sweep_pass_ms),
            fleet: config.fleet.map(|f| FleetSync::new(f, keys, metrics)),
            calls: ControlCalls::new(config.control),
            namespace: config.namespace,
            memory: MemoryGauge::define("fusebox.singleton.wasm_memory_bytes"),
            fast_ticks_left: START_FAST_TICKS,
            next_poll_ms: 0,
        }
    }

    pub fn start(&mut self) -> bool {
        let node = call::node_id(&self.calls.config);
        self.shipper.start(&self.calls.config, &self.namespace, &node);
        if let Some(f) = self.fleet.as_mut() {
            f.start(&self.namespace, &node);
        }
        self.sweeper.start(&self.namespace);
        let c = &self.calls.config;
        log::info!("singleton polling cluster '{}' {} every {} ms", c.cluster, c.policy_path, c.poll_interval_ms);
        self.set_cadence()
    }

    /// How often the poller polls: fast until the first policy is in.
    fn poll_every_ms(&self) -> u64 {
        let poll = self.calls.config.poll_interval_ms;
        if self.fast_ticks_left > 0 {
            START_TICK_MS.min(poll)
        } else {
            poll
        }
    }

    /// The tick serves the poller and the fleet sync, whichever wants it more often.
    fn set_cadence(&self) -> bool {
        let tick = self.fleet.as_ref().map_or(self.poll_every_ms(), |f| f.interval_ms().min(self.poll_every_ms()));
        host::set_tick_period(Duration::from_millis(tick))
    }

    /// Leaves the start-up cadence for the configured poll interval.
    fn settle_cadence(&mut self) {
        if self.fast_ticks_left > 0 {
            self.fast_ticks_left = 0;
            self.set_cadence();
        }
    }

    pub fn on_tick(&mut self) {
        if self.fast_ticks_left == 1 {
            self.settle_cadence(); // control is slow to answer: stop polling fast
        }
        self.fast_ticks_left = self.fast_ticks_left.saturating_sub(1);
        self.shipper.drain_queue();
        self.shipper.ship(&self.calls);
        let now_ms = host::now_ms();
        if let Some(f) = self.fleet.as_mut() {
            f.on_tick(&self.calls, now_ms);
        }
        self.sweeper.on_tick(now_ms);
        if now_ms >= self.next_poll_ms {
            // Less a little slack: a tick a few ms early must not put the poll off a whole tick.
            self.next_poll_ms = now_ms.saturating_add(self.poll_every_ms()).saturating_sub(START_TICK_MS / 2);
            self.poller.poll(&self.calls);
            self.memory.report();
        }
    }

    /// A worker queued events or keys.
    pub fn on_queue_ready(&mut self, queue: u32) {
        match self.fleet.as_mut() {
            Some(f) if f.owns_queue(queue) => f.drain_queue(host::now_ms()),
            _ if self.sweeper.owns_queue(queue) => self.sweeper.drain_queue(),
            _ => self.shipper.drain_queue(),
        }
    }

    pub fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if self.shipper.owns(token) {
            self.shipper.on_response(&self.calls);
        } else if let Some(f) = self.fleet.as_mut().filter(|f| f.owns(token)) {
            f.on_response(body_size);
        } else if self.poller.owns(token) && self.poller.on_response(body_size) == Polled::Published {
            self.settle_cadence();
            // Wait for the next change right away; an unchanged answer waits for the tick, so
            // a control that answers at once (no long poll) is not polled in a tight loop.
            self.poller.poll(&self.calls);
        }
    }
}
