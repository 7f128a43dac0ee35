//! Fleet counters in Redis, shared by every control replica: one hash per key
//! (`fusebox:fleet:<key>`), one field per Envoy process holding its last synced usage as JSON.
//! A sync is one pipeline per 2 000 keys (write each field, refresh the hash's expiry, read the
//! hash back) and another, only when something expired, to delete the entries of Envoys gone
//! for good.
//! Redis 7.0 has no per-field expiry, so expiry is decided here, on read, by the engine's rule.

use super::{answer, Unavailable};
use fusebox_engine::fleet::wire::{KeyUsage, StoredUsage, SyncRequest};
use fusebox_engine::fleet::{others, FleetUsage};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

const PREFIX: &str = "fusebox:fleet:";
/// A hash nobody writes to for this long goes (the longest budget is a calendar month).
const KEY_TTL_MS: u64 = 32 * 86_400_000;
/// A pipeline that Redis has not answered by then fails the sync (the Envoy retries on its
/// next interval).
const TIMEOUT: Duration = Duration::from_millis(1000);
/// Keys per pipeline: a sync of many keys is several pipelines, each well inside the timeout.
const CHUNK: usize = 2_000;

pub struct RedisFleet {
    conn: ConnectionManager,
}

impl RedisFleet {
    /// Connects lazily: control starts, and serves everything else, while Redis is down.
    pub fn open(url: &str) -> Result<RedisFleet, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--fleet-redis {url}: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("redis: {e}"))?;
        Ok(RedisFleet { conn })
    }

    pub(super) async fn sync(&self, req: &SyncRequest, now_ms: u64) -> Result<Vec<KeyUsage>, Unavailable> {
        if req.keys.is_empty() {
            return self.chunk(&[], &req.instance, now_ms).await;
        }
        let mut answers = Vec::with_capacity(req.keys.len());
        for keys in req.keys.chunks(CHUNK) {
            answers.extend(self.chunk(keys, &req.instance, now_ms).await?);
        }
        Ok(answers)
    }

    /// One pipeline: the keys' writes and reads, and their answers.
    async fn chunk(&self, keys: &[KeyUsage], instance: &str, now_ms: u64) -> Result<Vec<KeyUsage>, Unavailable> {
        let hashes: Vec<String> = keys.iter().map(|k| format!("{PREFIX}{}", k.key)).collect();
        let mut pipe = redis::pipe();
        for (k, hash) in keys.iter().zip(&hashes) {
            let stored = StoredUsage { as_of_ms: now_ms, usage: k.usage.clone() };
            let blob = serde_json::to_vec(&stored).map_err(|e| Unavailable(e.to_string()))?;
            pipe.hset(hash, instance, blob).ignore().pexpire(hash, KEY_TTL_MS as i64).ignore().hgetall(hash);
        }
        if keys.is_empty() {
            // An idle Envoy's sync is a heartbeat: it must still learn whether Redis is there.
            pipe.cmd("PING").ignore();
        }
        let mut conn = self.conn.clone();
        let read: Vec<HashMap<String, Vec<u8>>> = tokio::time::timeout(TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| Unavailable("redis did not answer in time".into()))?
            .map_err(|e| Unavailable(format!("redis: {e}")))?;
        let mut answers = Vec::with_capacity(keys.len());
        let mut cleanup = redis::pipe();
        let mut expired_any = false;
        for ((k, hash), fields) in keys.iter().zip(&hashes).zip(&read) {
            let entries: Vec<(&str, FleetUsage)> = fields
                .iter()
                .filter_map(|(instance, blob)| {
                    let s: StoredUsage = serde_json::from_slice(blob).ok()?;
                    Some((instance.as_str(), s.usage.to_usage(s.as_of_ms)))
                })
                .collect();
            let sum = others(entries.iter().map(|(i, u)| (*i, u)), instance, now_ms);
            answers.push(answer(&k.key, &sum.usage));
            if !sum.expired.is_empty() {
                expired_any = true;
                cleanup.hdel(hash, sum.expired).ignore();
            }
        }
        if expired_any {
            // Best effort: what is not deleted now expires again on the next read.
            let _: Result<(), _> = cleanup.query_async(&mut conn).await;
        }
        Ok(answers)
    }
}
