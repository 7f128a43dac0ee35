//! The buckets a worker added to (a new tenant state or run record), handed to the singleton on
//! the worker's tick, so its sweep reads only buckets that hold something instead of every
//! bucket of the tables (a hostcall each; see `singleton/sweeper.rs`).

use crate::host;
use crate::queue::SingletonQueue;
use std::cell::RefCell;

/// Claims a worker keeps between ticks; beyond it one is dropped (the sweep's slow lap over
/// every bucket still finds it).
const MAX_PENDING: usize = 10_000;

/// Which table a bucket is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    States,
    Runs,
}

impl Table {
    fn tag(self) -> u8 {
        match self {
            Table::States => b's',
            Table::Runs => b'r',
        }
    }

    fn from_tag(tag: u8) -> Option<Table> {
        match tag {
            b's' => Some(Table::States),
            b'r' => Some(Table::Runs),
            _ => None,
        }
    }
}

/// The shared queue's name for a namespace (the singleton registers it).
pub fn queue_name(namespace: &str) -> String {
    format!("{namespace}/v1/claims")
}

/// A batch off the queue: five bytes a claim, the table's tag and the bucket (u32, little-endian).
pub fn decode(bytes: &[u8]) -> impl Iterator<Item = (Table, u64)> + '_ {
    bytes.chunks_exact(5).filter_map(|c| {
        let (tag, n) = c.split_first()?;
        Some((Table::from_tag(*tag)?, u64::from(u32::from_le_bytes(n.try_into().ok()?))))
    })
}

pub struct Claims {
    pending: RefCell<Vec<u8>>,
    queue: SingletonQueue,
}

impl Claims {
    pub fn new(namespace: &str) -> Claims {
        Claims { pending: RefCell::new(Vec::new()), queue: SingletonQueue::new(queue_name(namespace)) }
    }

    pub fn claimed(&self, table: Table, bucket: u64) {
        let mut pending = self.pending.borrow_mut();
        if pending.len() < MAX_PENDING * 5 {
            pending.push(table.tag());
            pending.extend_from_slice(&u32::try_from(bucket).unwrap_or(u32::MAX).to_le_bytes());
        }
    }

    /// Hands the claims to the singleton (the worker's tick).
    pub fn flush(&self) {
        if self.pending.borrow().is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *self.pending.borrow_mut());
        let Some(queue) = self.queue.resolve() else { return };
        if let Err(s) = host::enqueue(queue, &batch) {
            log::debug!("handing {} bucket claims to the singleton failed: {s:?}", batch.len() / 5);
            self.queue.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_travel_as_five_bytes_each_and_garbage_is_skipped() {
        let bytes = [b's', 7, 0, 0, 0, b'r', 0, 1, 0, 0, b'x', 1, 1, 1, 1, b's'];
        assert_eq!(decode(&bytes).collect::<Vec<_>>(), [(Table::States, 7), (Table::Runs, 256)]);
    }
}
