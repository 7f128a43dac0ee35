//! Event reporting. Each worker merges its events in a small local backlog and hands them to
//! the singleton through an Envoy shared queue at most once a second (or every
//! [`FLUSH_EVENTS`] distinct events), so a request costs a merge into a map, not a hostcall.
//! The singleton drains the queue into its own bounded backlog and POSTs batches to control
//! (see `singleton.rs`). Nothing here ever blocks or fails a request.

use crate::host;
use crate::metrics::{Counter, Metrics};
use crate::queue::SingletonQueue;
use fusebox_engine::event::{Backlog, Event};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A worker flushes once its backlog holds this many distinct events.
const FLUSH_EVENTS: usize = 256;
/// ... or once this long has passed since the last flush.
const FLUSH_INTERVAL_MS: u64 = 1000;
/// Events a worker keeps between flushes.
const WORKER_BACKLOG: usize = 10_000;
/// Without a queue to hand events to (no singleton, or one with `events_path: null`), a worker
/// stops collecting and looks for the queue again this much later.
const NO_QUEUE_RETRY_MS: u64 = 10_000;

/// The shared queue's name for a namespace (the singleton registers it).
pub fn queue_name(namespace: &str) -> String {
    format!("{namespace}/v1/events")
}

pub struct Reporter {
    backlog: RefCell<Backlog>,
    queue: SingletonQueue,
    last_flush_ms: Cell<u64>,
    metrics: Rc<Metrics>,
    /// Not collecting until then (no queue found).
    idle_until_ms: Cell<u64>,
    warned_no_queue: Cell<bool>,
}

impl Reporter {
    pub fn new(namespace: &str, metrics: Rc<Metrics>) -> Reporter {
        Reporter {
            backlog: RefCell::new(Backlog::new(WORKER_BACKLOG)),
            queue: SingletonQueue::new(queue_name(namespace)),
            last_flush_ms: Cell::new(0),
            metrics,
            idle_until_ms: Cell::new(0),
            warned_no_queue: Cell::new(false),
        }
    }

    pub fn push(&self, event: Event, now_ms: u64) {
        if now_ms < self.idle_until_ms.get() {
            return;
        }
        let len = {
            let mut b = self.backlog.borrow_mut();
            b.push(event);
            b.len()
        };
        if len >= FLUSH_EVENTS || now_ms.saturating_sub(self.last_flush_ms.get()) >= FLUSH_INTERVAL_MS {
            self.flush(now_ms);
        }
    }

    /// Hands everything pending to the singleton's queue (called on pushes and the worker tick).
    pub fn flush(&self, now_ms: u64) {
        self.last_flush_ms.set(now_ms);
        self.metrics.add(Counter::EventsDropped, self.backlog.borrow_mut().newly_dropped());
        if self.backlog.borrow().is_empty() {
            return;
        }
        let Some(queue) = self.queue.resolve() else {
            let lost = self.backlog.borrow_mut().take(usize::MAX).len();
            self.metrics.add(Counter::EventsDropped, lost as u64);
            self.idle_until_ms.set(now_ms.saturating_add(NO_QUEUE_RETRY_MS));
            if !self.warned_no_queue.replace(true) {
                log::warn!(
                    "no event queue '{}' (is the singleton running, with events_path set?); events are not reported",
                    self.queue.name()
                );
            }
            return;
        };
        let events = self.backlog.borrow_mut().take(usize::MAX);
        let Ok(bytes) = serde_json::to_vec(&events) else { return };
        if let Err(s) = host::enqueue(queue, &bytes) {
            // The singleton went away (reload): look the queue up again next time.
            log::warn!("handing {} events to the singleton failed ({s:?}); dropped", events.len());
            self.metrics.add(Counter::EventsDropped, events.len() as u64);
            self.queue.forget();
        }
    }
}
