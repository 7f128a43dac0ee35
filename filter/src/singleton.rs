//! The background singleton (`envoy.bootstrap.wasm`, same vm_id as the filter): polls the
//! control service for the policy and publishes each new valid policy to shared data, where
//! every worker's filter picks it up. If control is down or answers garbage, nothing is
//! published and the workers keep the last good policy.
//!
//! It also ships the workers' events: it drains the shared queue into a bounded backlog and
//! POSTs batches to control. A batch keeps its id until control acknowledges it, so a retry
//! after a lost reply is recognised by control and not counted twice.

use crate::events;
use crate::host;
use crate::metrics::{Counter, MemoryGauge, Metrics};
use crate::store::{self, Keys};
use fusebox_engine::config::SingletonConfig;
use fusebox_engine::event::{Backlog, Batch, Event};
use fusebox_engine::policy::Policy;
use std::rc::Rc;
use std::time::Duration;

/// Events per POST.
const BATCH_EVENTS: usize = 1000;

/// A batch on its way to control (kept, with its id, until acknowledged).
struct Outgoing {
    body: Vec<u8>,
    events: usize,
    call: Option<u32>,
}

pub struct SingletonRoot {
    config: SingletonConfig,
    keys: Keys,
    metrics: Rc<Metrics>,
    /// `Bearer <token>` for control, if configured (built once).
    authorization: Option<String>,
    etag: Option<String>,
    generation: u64,
    in_flight: Option<u32>,
    /// Whether the last poll reached control; failures are logged on change, not every tick.
    reachable: bool,
    queue: Option<u32>,
    backlog: Backlog,
    outgoing: Option<Outgoing>,
    source: String,
    boot_ms: u64,
    batch_seq: u64,
    shipping_ok: bool,
    memory: MemoryGauge,
    /// Ticks left at the start-up cadence (see [`START_TICK_MS`]); 0 once the first policy is in.
    fast_ticks_left: u32,
}

/// Until control's first policy arrives, poll this often (for at most [`START_FAST_TICKS`]
/// ticks): after a start or a hot restart the workers enforce the fallback policy from the
/// Envoy configuration until then, so that window should be short.
const START_TICK_MS: u64 = 50;
const START_FAST_TICKS: u32 = 40;

impl SingletonRoot {
    pub fn new(config: SingletonConfig, metrics: Rc<Metrics>) -> SingletonRoot {
        let keys = Keys::new(&config.namespace);
        // Continue the generation after a singleton reload so workers still see a change.
        let generation = store::policy_generation(&keys).unwrap_or(0);
        let backlog = Backlog::new(config.control.max_backlog);
        let authorization = config.control.token.as_ref().map(|t| format!("Bearer {t}"));
        SingletonRoot {
            config,
            keys,
            metrics,
            authorization,
            etag: None,
            generation,
            in_flight: None,
            reachable: true,
            queue: None,
            backlog,
            outgoing: None,
            source: String::new(),
            boot_ms: 0,
            batch_seq: 0,
            shipping_ok: true,
            memory: MemoryGauge::define("fusebox.singleton.wasm_memory_bytes"),
            fast_ticks_left: START_FAST_TICKS,
        }
    }

    pub fn start(&mut self) -> bool {
        self.boot_ms = host::now_ms();
        // Batch ids must be unique across Envoys and restarts: node id plus start time.
        self.source =
            host::property_string(&["node", "id"]).filter(|id| !id.is_empty()).unwrap_or_else(|| "envoy".into());
        if self.config.control.events_path.is_some() {
            self.queue = host::register_queue(&events::queue_name(&self.config.namespace));
        }
        log::info!(
            "fusebox: singleton polling cluster '{}' {} every {} ms",
            self.config.control.cluster,
            self.config.control.policy_path,
            self.config.control.poll_interval_ms
        );
        host::set_tick_period(Duration::from_millis(START_TICK_MS.min(self.config.control.poll_interval_ms)))
    }

    /// Leaves the start-up cadence for the configured poll interval.
    fn settle_cadence(&mut self) {
        if self.fast_ticks_left > 0 {
            self.fast_ticks_left = 0;
            host::set_tick_period(Duration::from_millis(self.config.control.poll_interval_ms));
        }
    }

    pub fn on_tick(&mut self) {
        if self.fast_ticks_left == 1 {
            self.settle_cadence(); // control is slow to answer: stop polling fast
        }
        self.fast_ticks_left = self.fast_ticks_left.saturating_sub(1);
        self.drain_queue();
        self.ship_events();
        self.poll_policy();
        self.memory.report();
    }

    /// Moves what the workers queued into the backlog.
    pub fn drain_queue(&mut self) {
        let Some(queue) = self.queue else { return };
        while let Some(bytes) = host::dequeue(queue) {
            match serde_json::from_slice::<Vec<Event>>(&bytes) {
                Ok(events) => events.into_iter().for_each(|e| self.backlog.push(e)),
                Err(e) => log::warn!("fusebox: unreadable event batch from a worker dropped: {e}"),
            }
        }
        let newly = self.backlog.newly_dropped();
        if newly > 0 {
            self.metrics.add(Counter::EventsDropped, newly);
            log::warn!("fusebox: event backlog full: {} oldest events dropped so far", self.backlog.dropped());
        }
    }

    /// Headers of a call to control: method, path, authority and the bearer token.
    fn control_headers<'a>(&'a self, method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut headers =
            vec![(":method", method), (":path", path), (":authority", self.config.control.authority.as_str())];
        if let Some(auth) = &self.authorization {
            headers.push(("authorization", auth.as_str()));
        }
        headers
    }

    fn ship_events(&mut self) {
        if self.config.control.events_path.is_none() {
            return;
        }
        if self.outgoing.as_ref().is_some_and(|o| o.call.is_some()) {
            return; // one batch at a time; its callback always comes
        }
        if self.outgoing.is_none() {
            if self.backlog.is_empty() {
                return;
            }
            self.batch_seq += 1;
            let events = self.backlog.take(BATCH_EVENTS);
            let batch = Batch {
                batch_id: format!("{}-{}-{}", self.source, self.boot_ms, self.batch_seq),
                source: self.source.clone(),
                dropped: self.backlog.dropped(),
                events,
            };
            let Ok(body) = serde_json::to_vec(&batch) else { return };
            self.outgoing = Some(Outgoing { body, events: batch.events.len(), call: None });
        }
        let (Some(out), Some(path)) = (self.outgoing.as_ref(), self.config.control.events_path.as_deref()) else {
            return;
        };
        let c = &self.config.control;
        let mut headers = self.control_headers("POST", path);
        headers.push(("content-type", "application/json"));
        let timeout = Duration::from_millis(c.timeout_ms.max(2000));
        match host::http_call_with_body(&c.cluster, headers, &out.body, timeout) {
            Ok(token) => {
                if let Some(out) = self.outgoing.as_mut() {
                    out.call = Some(token);
                }
            }
            Err(s) => {
                let why = format!("cannot call cluster '{}': {s:?}", c.cluster);
                self.shipping_failed(&why);
            }
        }
    }

    fn shipping_failed(&mut self, why: &str) {
        self.metrics.inc(Counter::EventsShipFailures);
        if self.shipping_ok {
            log::warn!("fusebox: shipping events to control failed, keeping them for a retry: {why}");
        }
        self.shipping_ok = false;
    }

    fn events_response(&mut self) {
        let Some(out) = self.outgoing.as_mut() else { return };
        out.call = None;
        match host::http_call_header(":status").as_deref() {
            Some(s) if s.starts_with('2') => {
                self.metrics.add(Counter::EventsShipped, out.events as u64);
                self.outgoing = None;
                if !self.shipping_ok {
                    log::info!("fusebox: shipping events to control works again");
                }
                self.shipping_ok = true;
                // Catch up right away if more is waiting.
                self.ship_events();
            }
            Some(s) if s.starts_with('4') && s != "401" && s != "403" && s != "429" => {
                // Control will never accept this batch: drop it rather than retry forever.
                log::error!("fusebox: control refused an event batch ({s}); {} events dropped", out.events);
                self.metrics.add(Counter::EventsDropped, out.events as u64);
                self.outgoing = None;
            }
            Some(s) => self.shipping_failed(&format!("control answered {s}")),
            None => self.shipping_failed("control unreachable or timed out"),
        }
    }

    fn poll_policy(&mut self) {
        if self.in_flight.is_some() {
            return; // the previous call always completes (or times out) with a callback
        }
        let c = &self.config.control;
        let mut headers = self.control_headers("GET", &c.policy_path);
        if let Some(etag) = &self.etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        match host::http_call(&c.cluster, headers, Duration::from_millis(c.timeout_ms)) {
            Ok(token) => self.in_flight = Some(token),
            Err(s) => {
                let why = format!("cannot call cluster '{}': {s:?}", c.cluster);
                self.failed(&why);
            }
        }
    }

    fn failed(&mut self, why: &str) {
        self.metrics.inc(Counter::PolicyPollFailures);
        if self.reachable {
            log::warn!("fusebox: policy poll failed, keeping the last good policy: {why}");
        }
        self.reachable = false;
    }

    pub fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if self.outgoing.as_ref().is_some_and(|o| o.call == Some(token)) {
            self.events_response();
            return;
        }
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        // A failed call (connect error, timeout) arrives without a :status.
        let status = host::http_call_header(":status");
        match status.as_deref() {
            Some("304") => self.recovered(),
            Some("200") => {
                let body = host::http_call_body(body_size).unwrap_or_default();
                match Policy::from_json(&body) {
                    Ok(policy) => {
                        self.recovered();
                        self.publish(&body, policy.version);
                    }
                    Err(e) => {
                        self.metrics.inc(Counter::PolicyRejected);
                        self.failed(&format!("control returned an invalid policy: {e}"));
                    }
                }
            }
            Some(other) => self.failed(&format!("control answered {other}")),
            None => self.failed("control unreachable or timed out"),
        }
    }

    fn recovered(&mut self) {
        if !self.reachable {
            log::info!("fusebox: control reachable again");
        }
        self.reachable = true;
    }

    fn publish(&mut self, json: &[u8], version: u64) {
        let generation = self.generation.wrapping_add(1);
        match store::publish_policy(&self.keys, json, generation) {
            Ok(()) => {
                self.generation = generation;
                self.etag = host::http_call_header("etag");
                self.settle_cadence();
                log::info!("fusebox: published policy version {version} (generation {generation})");
            }
            Err(s) => log::error!("fusebox: publishing the policy failed: {s:?}"),
        }
    }
}
