//! The event shipper: drains what the workers queued into a bounded backlog and POSTs batches
//! to control, one at a time. A batch keeps its id until control acknowledges it, so a retry
//! after a lost reply is recognised by control and not counted twice.

use super::call::ControlCalls;
use crate::events;
use crate::host;
use crate::metrics::{Counter, Metrics};
use fusebox_engine::config::ControlConfig;
use fusebox_engine::event::{Backlog, Batch, Event};
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

pub struct EventShipper {
    metrics: Rc<Metrics>,
    queue: Option<u32>,
    backlog: Backlog,
    outgoing: Option<Outgoing>,
    /// The Envoy's node id, which with `boot_ms` and a sequence makes batch ids unique.
    source: String,
    boot_ms: u64,
    batch_seq: u64,
    shipping_ok: bool,
}

impl EventShipper {
    pub fn new(config: &ControlConfig, metrics: Rc<Metrics>) -> EventShipper {
        EventShipper {
            metrics,
            queue: None,
            backlog: Backlog::new(config.max_backlog),
            outgoing: None,
            source: String::new(),
            boot_ms: 0,
            batch_seq: 0,
            shipping_ok: true,
        }
    }

    /// Registers the workers' queue (when events are shipped at all).
    pub fn start(&mut self, config: &ControlConfig, namespace: &str, node: &str) {
        self.boot_ms = host::now_ms();
        // Batch ids must be unique across Envoys and restarts: node id plus start time.
        self.source = node.to_string();
        if config.events_path.is_some() {
            self.queue = host::register_queue(&events::queue_name(namespace));
        }
    }

    /// Whether `token` is the call carrying this shipper's batch.
    pub fn owns(&self, token: u32) -> bool {
        self.outgoing.as_ref().is_some_and(|o| o.call == Some(token))
    }

    /// Moves what the workers queued into the backlog.
    pub fn drain_queue(&mut self) {
        let Some(queue) = self.queue else { return };
        while let Some(bytes) = host::dequeue(queue) {
            match serde_json::from_slice::<Vec<Event>>(&bytes) {
                Ok(events) => events.into_iter().for_each(|e| self.backlog.push(e)),
                Err(e) => log::warn!("unreadable event batch from a worker dropped: {e}"),
            }
        }
        let newly = self.backlog.newly_dropped();
        if newly > 0 {
            self.metrics.add(Counter::EventsDropped, newly);
            log::warn!("event backlog full: {} oldest events dropped so far", self.backlog.dropped());
        }
    }

    /// Sends the next batch, unless one is on its way.
    pub fn ship(&mut self, calls: &ControlCalls) {
        let Some(path) = calls.config.events_path.as_deref() else { return };
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
        let Some(out) = self.outgoing.as_ref() else { return };
        let c = &calls.config;
        let mut headers = calls.headers("POST", path);
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
                self.failed(&why);
            }
        }
    }

    fn failed(&mut self, why: &str) {
        self.metrics.inc(Counter::EventsShipFailures);
        if self.shipping_ok {
            log::warn!("shipping events to control failed, keeping them for a retry: {why}");
        }
        self.shipping_ok = false;
    }

    /// Handles control's answer to a batch.
    pub fn on_response(&mut self, calls: &ControlCalls) {
        let Some(out) = self.outgoing.as_mut() else { return };
        out.call = None;
        match host::http_call_header(":status").as_deref() {
            Some(s) if s.starts_with('2') => {
                self.metrics.add(Counter::EventsShipped, out.events as u64);
                self.outgoing = None;
                if !self.shipping_ok {
                    log::info!("shipping events to control works again");
                }
                self.shipping_ok = true;
                // Catch up right away if more is waiting.
                self.ship(calls);
            }
            Some(s) if s.starts_with('4') && s != "401" && s != "403" && s != "429" => {
                // Control will never accept this batch: drop it rather than retry forever.
                log::error!("control refused an event batch ({s}); {} events dropped", out.events);
                self.metrics.add(Counter::EventsDropped, out.events as u64);
                self.outgoing = None;
            }
            Some(s) => self.failed(&format!("control answered {s}")),
            None => self.failed("control unreachable or timed out"),
        }
    }
}
