//! Fleet counters: each Envoy's usage of each key, so every Envoy can be told the rest of the
//! fleet's (`POST /v1/fleet/sync`). In memory for a single control replica (the default), in
//! Redis when several replicas serve one fleet. Either way an entry is owned by one Envoy
//! process and overwritten by its next sync, so a retried or duplicated sync counts once.

mod memory;
mod redis_store;

use fusebox_engine::fleet::wire::{KeyUsage, SyncReply, SyncRequest, WireUsage};
use fusebox_engine::fleet::FleetUsage;
pub use memory::MemoryFleet;
pub use redis_store::RedisFleet;

pub enum FleetStore {
    Memory(MemoryFleet),
    Redis(RedisFleet),
}

/// The fleet counters cannot be reached (the Envoys fall back to their local share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl FleetStore {
    /// Redis at `url` when given, else memory.
    pub fn open(redis_url: Option<&str>) -> Result<FleetStore, String> {
        match redis_url {
            Some(url) => Ok(FleetStore::Redis(RedisFleet::open(url)?)),
            None => Ok(FleetStore::Memory(MemoryFleet::default())),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            FleetStore::Memory(_) => "memory",
            FleetStore::Redis(_) => "redis",
        }
    }

    /// Stores the sender's usage of each key and answers with everyone else's.
    pub async fn sync(&self, req: &SyncRequest, now_ms: u64) -> Result<SyncReply, Unavailable> {
        let answers = match self {
            FleetStore::Memory(m) => m.sync(req, now_ms),
            FleetStore::Redis(r) => r.sync(req, now_ms).await?,
        };
        Ok(SyncReply { keys: answers })
    }
}

/// A reply entry: `others` for `key`, as the wire carries it.
fn answer(key: &str, others: &FleetUsage) -> KeyUsage {
    KeyUsage { key: key.to_string(), usage: WireUsage::from(others) }
}
