//! A shared queue the singleton registered, as a worker finds it: looked up by name in this
//! plugin's VM, remembered, and forgotten when the singleton went away (a reload).

use crate::host;
use std::cell::Cell;

pub struct SingletonQueue {
    name: String,
    id: Cell<Option<u32>>,
}

impl SingletonQueue {
    pub fn new(name: String) -> SingletonQueue {
        SingletonQueue { name, id: Cell::new(None) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's id, if the singleton has registered it.
    pub fn resolve(&self) -> Option<u32> {
        if let Some(q) = self.id.get() {
            return Some(q);
        }
        let vm_id = host::property_string(&["plugin_vm_id"]).unwrap_or_default();
        let q = host::resolve_queue(&vm_id, &self.name);
        self.id.set(q);
        q
    }

    /// An enqueue failed: look the queue up again next time.
    pub fn forget(&self) {
        self.id.set(None);
    }
}
