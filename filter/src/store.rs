//! Per-tenant state in Envoy shared data, updated with compare-and-swap so that every worker's
//! increments land exactly once.
//!
//! Envoy does not check the CAS token when the key does not exist yet, so two workers creating
//! the same key at once would both "succeed" and one update would be lost. We create keys with
//! a CAS token that no existing entry can hold: every shared-data write takes the next value
//! of one process-wide counter, so right after writing an anchor key its token is held by the
//! anchor alone. Creating the tenant key with that token succeeds only if the key is still
//! missing; if another worker created it in between, its entry has a different token and
//! Envoy reports a mismatch, and we retry as an ordinary update.

use crate::host;
use fusebox_engine::state::bucket::{Bucket, Keep, Named};
use proxy_wasm::types::Status;

/// A value kept in shared data: how it is encoded, and what a missing value means.
pub trait Stored: Default {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: Vec<u8>) -> Option<Self>;
}

/// A bucket with nothing in it is an empty value: what it held is freed (Envoy cannot delete the
/// key, so the keys are a fixed set).
impl<E: Named> Stored for Bucket<E> {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        Bucket::decode(bytes)
    }
}

/// Attempts before giving up under extreme contention (each attempt is a few microseconds).
const MAX_ATTEMPTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    Host(Status),
    Contention,
    /// The bucket a new tenant state would go in holds as many states as it may, all of which
    /// still matter.
    Full,
}

/// Shared-data keys of one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    state_prefix: String,
    run_prefix: String,
    anchor: String,
    pub policy: String,
    pub policy_gen: String,
    /// The share of every limit the workers enforce (1: the whole limit, counted fleet-wide).
    pub fleet_share: String,
    /// This Envoy's name in the fleet, kept across singleton reloads (see `singleton/fleet.rs`).
    pub fleet_instance: String,
    /// Written by the first singleton of this Envoy process (see `singleton/sweeper.rs`).
    pub sweep_marker: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        Keys {
            state_prefix: format!("{namespace}/v2/s/"),
            run_prefix: format!("{namespace}/v2/r/"),
            anchor: format!("{namespace}/v1/cas-anchor"),
            policy: format!("{namespace}/v1/policy"),
            policy_gen: format!("{namespace}/v1/policy-gen"),
            fleet_share: format!("{namespace}/v1/fleet-share"),
            fleet_instance: format!("{namespace}/v1/fleet-instance"),
            sweep_marker: format!("{namespace}/v1/sweep-marker"),
        }
    }

    /// The key of a bucket of the tenant state table (see `fusebox_engine::state::entry`). The
    /// layout is v2: the slots of v1 are not read (they go with the Envoy process).
    pub fn state_bucket(&self, n: u64) -> String {
        format!("{}{n}", self.state_prefix)
    }

    /// The key of a bucket of the run table (see `fusebox_engine::run`).
    pub fn run_bucket(&self, n: u64) -> String {
        format!("{}{n}", self.run_prefix)
    }
}

/// What an update found in the store, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateInfo {
    /// The stored value could not be decoded and was replaced by a fresh state.
    pub corrupt: bool,
}

fn decode<T: Stored>(bytes: Option<Vec<u8>>, info: &mut UpdateInfo) -> T {
    match bytes {
        Some(b) if !b.is_empty() => T::from_bytes(b).unwrap_or_else(|| {
            info.corrupt = true;
            T::default()
        }),
        _ => T::default(),
    }
}

/// A CAS token that no entry holds except the anchor we just wrote.
fn fresh_token(keys: &Keys) -> Result<u32, StoreError> {
    host::shared_set(&keys.anchor, b"1", None).map_err(StoreError::Host)?;
    match host::shared_get(&keys.anchor).map_err(StoreError::Host)? {
        (_, Some(cas)) => Ok(cas),
        (_, None) => Err(StoreError::Host(Status::NotFound)),
    }
}

/// Reads, modifies with `f` and writes back a stored value atomically.
pub fn update<T: Stored, R>(
    keys: &Keys,
    key: &str,
    mut f: impl FnMut(&mut T) -> R,
) -> Result<(R, UpdateInfo), StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let (bytes, cas) = host::shared_get(key).map_err(StoreError::Host)?;
        let mut info = UpdateInfo::default();
        let mut value: T = decode(bytes, &mut info);
        let result = f(&mut value);
        let token = match cas {
            Some(cas) => cas,
            None => fresh_token(keys)?,
        };
        match host::shared_set(key, &value.to_bytes(), Some(token)) {
            Ok(()) => return Ok((result, info)),
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(StoreError::Host(s)),
        }
    }
    Err(StoreError::Contention)
}

/// Like [`update`], but writes only when `f` returns `Some` (a look that finds nothing to
/// change costs no write).
pub fn update_if<T: Stored, R>(
    keys: &Keys,
    key: &str,
    mut f: impl FnMut(&mut T) -> Option<R>,
) -> Result<Option<(R, UpdateInfo)>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let (bytes, cas) = host::shared_get(key).map_err(StoreError::Host)?;
        let mut info = UpdateInfo::default();
        let mut value: T = decode(bytes, &mut info);
        let Some(result) = f(&mut value) else { return Ok(None) };
        let token = match cas {
            Some(cas) => cas,
            None => fresh_token(keys)?,
        };
        match host::shared_set(key, &value.to_bytes(), Some(token)) {
            Ok(()) => return Ok(Some((result, info))),
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(StoreError::Host(s)),
        }
    }
    Err(StoreError::Contention)
}

/// What a sweep left in one bucket, and what it did there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Entries still in it.
    pub held: usize,
    /// Entries changed (made smaller) in place.
    pub changed: usize,
    /// Entries removed: they no longer mattered, or did not decode.
    pub dropped: usize,
}

/// Judges every entry of the bucket at `key` with `judge` (see [`Bucket::sweep`]) and writes back
/// what changed; a value that is not a bucket is emptied. `None` when the bucket changed
/// meanwhile (the write is a compare-and-swap): it is judged again next pass.
pub fn sweep_bucket<E: Named>(key: &str, judge: impl FnMut(&mut E) -> Keep) -> Option<Swept> {
    let Ok((Some(bytes), Some(cas))) = host::shared_get(key) else { return Some(Swept::default()) };
    if bytes.is_empty() {
        return Some(Swept::default());
    }
    let mut b = Bucket::<E>::decode(bytes).unwrap_or_default();
    let (changed, dropped) = b.sweep(judge);
    let swept = Swept { held: b.len(), changed, dropped };
    if changed == 0 && dropped == 0 && !b.is_empty() {
        return Some(swept);
    }
    host::shared_set(key, &b.encode(), Some(cas)).ok().map(|()| swept)
}

/// Reads a stored value without changing it (the default when missing or unreadable).
pub fn read<T: Stored>(key: &str) -> Result<T, StoreError> {
    let (bytes, _) = host::shared_get(key).map_err(StoreError::Host)?;
    Ok(decode(bytes, &mut UpdateInfo::default()))
}

/// The generation of the policy the singleton last published, if any.
pub fn policy_generation(keys: &Keys) -> Option<u64> {
    match host::shared_get(&keys.policy_gen) {
        Ok((Some(b), _)) => b.as_slice().try_into().ok().map(u64::from_le_bytes),
        _ => None,
    }
}

pub fn published_policy(keys: &Keys) -> Option<Vec<u8>> {
    host::shared_get(&keys.policy).ok().and_then(|(b, _)| b)
}

/// Publishes a validated policy document (singleton only: the single writer of these keys).
pub fn publish_policy(keys: &Keys, json: &[u8], generation: u64) -> Result<(), Status> {
    host::shared_set(&keys.policy, json, None)?;
    host::shared_set(&keys.policy_gen, &generation.to_le_bytes(), None)
}

/// The share of every limit the workers enforce: 1 unless the singleton fell back to a local
/// share because fleet counts are unavailable.
pub fn fleet_share(keys: &Keys) -> u32 {
    match host::shared_get(&keys.fleet_share) {
        Ok((Some(b), _)) => b.as_slice().try_into().ok().map_or(1, u32::from_le_bytes).max(1),
        _ => 1,
    }
}

/// Publishes the share (singleton only).
pub fn publish_fleet_share(keys: &Keys, share: u32) -> Result<(), Status> {
    host::shared_set(&keys.fleet_share, &share.to_le_bytes(), None)
}

/// A UTF-8 value, if the key exists and holds one.
pub fn read_string(key: &str) -> Option<String> {
    host::shared_get(key).ok().and_then(|(b, _)| b).and_then(|b| String::from_utf8(b).ok())
}
