//! The state keys and run trees a worker used, handed to the singleton (which syncs them with the fleet)
//! on the worker's tick: a request costs a set lookup, not a hostcall.

use crate::host;
use crate::queue::SingletonQueue;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

/// Distinct keys a worker collects between ticks; beyond it a key waits for its next request.
const MAX_PENDING: usize = 10_000;
/// Without a queue (no singleton, or one that does not count with a fleet) a worker stops
/// collecting and looks again this much later.
const NO_QUEUE_RETRY_MS: u64 = 1_000;

/// The shared queue's name for a namespace (the singleton registers it when it has a fleet).
pub fn queue_name(namespace: &str) -> String {
    format!("{namespace}/v1/fleet-keys")
}

pub struct FleetKeys {
    pending: RefCell<HashSet<String>>,
    queue: SingletonQueue,
    /// Not collecting until then (no queue found).
    idle_until_ms: Cell<u64>,
}

impl FleetKeys {
    pub fn new(namespace: &str) -> FleetKeys {
        FleetKeys {
            pending: RefCell::new(HashSet::new()),
            queue: SingletonQueue::new(queue_name(namespace)),
            idle_until_ms: Cell::new(0),
        }
    }

    /// A request used the state `key` (its fleet name).
    pub fn touch(&self, key: &str, now_ms: u64) {
        if now_ms < self.idle_until_ms.get() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        if pending.len() < MAX_PENDING && !pending.contains(key) {
            pending.insert(key.to_string());
        }
    }

    /// Hands the keys to the singleton, one line each (the worker's tick).
    pub fn flush(&self, now_ms: u64) {
        if self.pending.borrow().is_empty() {
            return;
        }
        let keys: Vec<String> = self.pending.borrow_mut().drain().collect();
        let Some(queue) = self.queue.resolve() else {
            self.idle_until_ms.set(now_ms.saturating_add(NO_QUEUE_RETRY_MS));
            return;
        };
        if let Err(s) = host::enqueue(queue, keys.join("\n").as_bytes()) {
            // The singleton went away (reload): look the queue up again next time.
            log::debug!("handing {} fleet keys to the singleton failed: {s:?}", keys.len());
            self.queue.forget();
        }
    }
}
