//! Fleet counters: each Envoy's usage of each key, and its part of each agent run, so every
//! Envoy can be told the rest of the fleet's (`POST /v1/fleet/sync`). In memory for a single
//! control replica (the default), in Redis when several replicas serve one fleet. Either way an
//! entry is owned by one Envoy process and overwritten by its next sync, so a retried or
//! duplicated sync counts once.

mod memory;
mod redis_store;

use fusebox_engine::fleet::wire::{KeyUsage, StoredUsage, SyncReply, SyncRequest, WireUsage};
use fusebox_engine::fleet::{Entry, FleetUsage, RunPart, RunUsage};
pub use memory::MemoryFleet;
pub use redis_store::RedisFleet;
use serde::de::DeserializeOwned;
use serde::Serialize;

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

    /// Stores the sender's usage of each key and part of each run, and answers with everyone
    /// else's.
    pub async fn sync(&self, req: &SyncRequest, now_ms: u64) -> Result<SyncReply, Unavailable> {
        match self {
            FleetStore::Memory(m) => Ok(m.sync(req, now_ms)),
            FleetStore::Redis(r) => r.sync(req, now_ms).await,
        }
    }
}

/// What a sync carries per name, stored per (name, Envoy) and answered with the others' sum.
trait Synced: Sized {
    /// Where its entries live in Redis: one hash per name under this prefix.
    const PREFIX: &'static str;
    /// How an entry is kept (what arrived, with whatever the store adds).
    type Stored: Serialize + DeserializeOwned;
    type Entry: Entry + Clone;
    fn name(&self) -> &str;
    fn stored(&self, now_ms: u64) -> Self::Stored;
    fn entry(stored: Self::Stored) -> Self::Entry;
    fn answer(name: &str, others: &Self::Entry) -> Self;
}

impl Synced for KeyUsage {
    const PREFIX: &'static str = "fusebox:fleet:";
    type Stored = StoredUsage;
    type Entry = FleetUsage;

    fn name(&self) -> &str {
        &self.key
    }

    /// Stamped with its arrival: gauges (requests in flight) are true as of then.
    fn stored(&self, now_ms: u64) -> StoredUsage {
        StoredUsage { as_of_ms: now_ms, usage: self.usage.clone() }
    }

    fn entry(s: StoredUsage) -> FleetUsage {
        s.usage.to_usage(s.as_of_ms)
    }

    fn answer(key: &str, others: &FleetUsage) -> KeyUsage {
        KeyUsage { key: key.to_string(), usage: WireUsage::from(others) }
    }
}

impl Synced for RunUsage {
    const PREFIX: &'static str = "fusebox:fleet-run:";
    type Stored = RunPart;
    type Entry = RunPart;

    fn name(&self) -> &str {
        &self.run
    }

    /// A run part carries its own times (when its Envoy last saw the run, and for how long it counts).
    fn stored(&self, _now_ms: u64) -> RunPart {
        self.part
    }

    fn entry(part: RunPart) -> RunPart {
        part
    }

    fn answer(run: &str, others: &RunPart) -> RunUsage {
        RunUsage { run: run.to_string(), part: *others }
    }
}
