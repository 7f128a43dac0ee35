//! The background singleton (`envoy.bootstrap.wasm`, same vm_id as the filter): the policy
//! poller (`poller.rs`) keeps the workers' policy current, the event shipper (`shipper.rs`)
//! takes their events to control. Both run on the singleton's tick; neither can stop traffic.

mod call;
mod poller;
mod shipper;

use crate::host;
use crate::metrics::{MemoryGauge, Metrics};
use crate::store::Keys;
use call::ControlCalls;
use fusebox_engine::config::SingletonConfig;
use poller::{PolicyPoller, Polled};
use shipper::EventShipper;
use std::rc::Rc;
use std::time::Duration;

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
    memory: MemoryGauge,
    /// Ticks left at the start-up cadence (see [`START_TICK_MS`]); 0 once the first policy is in.
    fast_ticks_left: u32,
}

impl SingletonRoot {
    pub fn new(config: SingletonConfig, metrics: Rc<Metrics>) -> SingletonRoot {
        let keys = Keys::new(&config.namespace);
        SingletonRoot {
            poller: PolicyPoller::new(keys, Rc::clone(&metrics)),
            shipper: EventShipper::new(&config.control, metrics),
            calls: ControlCalls::new(config.control),
            namespace: config.namespace,
            memory: MemoryGauge::define("fusebox.singleton.wasm_memory_bytes"),
            fast_ticks_left: START_FAST_TICKS,
        }
    }

    pub fn start(&mut self) -> bool {
        self.shipper.start(&self.calls.config, &self.namespace);
        let c = &self.calls.config;
        log::info!("singleton polling cluster '{}' {} every {} ms", c.cluster, c.policy_path, c.poll_interval_ms);
        host::set_tick_period(Duration::from_millis(START_TICK_MS.min(c.poll_interval_ms)))
    }

    /// Leaves the start-up cadence for the configured poll interval.
    fn settle_cadence(&mut self) {
        if self.fast_ticks_left > 0 {
            self.fast_ticks_left = 0;
            host::set_tick_period(Duration::from_millis(self.calls.config.poll_interval_ms));
        }
    }

    pub fn on_tick(&mut self) {
        if self.fast_ticks_left == 1 {
            self.settle_cadence(); // control is slow to answer: stop polling fast
        }
        self.fast_ticks_left = self.fast_ticks_left.saturating_sub(1);
        self.shipper.drain_queue();
        self.shipper.ship(&self.calls);
        self.poller.poll(&self.calls);
        self.memory.report();
    }

    /// The workers queued events.
    pub fn drain_queue(&mut self) {
        self.shipper.drain_queue();
    }

    pub fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if self.shipper.owns(token) {
            self.shipper.on_response(&self.calls);
        } else if self.poller.owns(token) && self.poller.on_response(body_size) == Polled::Published {
            self.settle_cadence();
            // Wait for the next change right away; an unchanged answer waits for the tick, so
            // a control that answers at once (no long poll) is not polled in a tight loop.
            self.poller.poll(&self.calls);
        }
    }
}
