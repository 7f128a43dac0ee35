//! Fleet counters in Redis, shared by every control replica: one hash per key
//! (`fusebox:fleet:<key>`) and per run (`fusebox:fleet-run:<tenant>/<root run>`), one field per
//! Envoy process holding its last synced usage or run part as JSON. A sync is one pipeline per
//! 2 000 names (write each field, refresh the hash's expiry, read the hash back) and another,
//! only when something expired, to delete the entries of Envoys gone for good.
//! Redis 7.0 has no per-field expiry, so expiry is decided here, on read, by the engine's rule.

use super::{Synced, Unavailable};
use fusebox_engine::fleet::others;
use fusebox_engine::fleet::wire::{KeyUsage, SyncReply, SyncRequest};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

/// A hash nobody writes to for this long goes (the longest budget is a calendar month).
const KEY_TTL_MS: u64 = 32 * 86_400_000;
/// A pipeline that Redis has not answered by then fails the sync (the Envoy retries on its
/// next interval).
const TIMEOUT: Duration = Duration::from_millis(1000);
/// Names per pipeline: a sync of many is several pipelines, each well inside the timeout.
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

    pub(super) async fn sync(&self, req: &SyncRequest, now_ms: u64) -> Result<SyncReply, Unavailable> {
        if req.keys.is_empty() && req.runs.is_empty() {
            // An idle Envoy's sync is a heartbeat: it must still learn whether Redis is there.
            self.chunk::<KeyUsage>(&[], &req.instance, now_ms).await?;
            return Ok(SyncReply::default());
        }
        Ok(SyncReply {
            keys: self.all(&req.keys, &req.instance, now_ms).await?,
            runs: self.all(&req.runs, &req.instance, now_ms).await?,
        })
    }

    async fn all<S: Synced>(&self, items: &[S], instance: &str, now_ms: u64) -> Result<Vec<S>, Unavailable> {
        let mut answers = Vec::with_capacity(items.len());
        for chunk in items.chunks(CHUNK) {
            answers.extend(self.chunk(chunk, instance, now_ms).await?);
        }
        Ok(answers)
    }

    /// One pipeline: the items' writes and reads, and their answers.
    async fn chunk<S: Synced>(&self, items: &[S], instance: &str, now_ms: u64) -> Result<Vec<S>, Unavailable> {
        let hashes: Vec<String> = items.iter().map(|k| format!("{}{}", S::PREFIX, k.name())).collect();
        let mut pipe = redis::pipe();
        for (item, hash) in items.iter().zip(&hashes) {
            let blob = serde_json::to_vec(&item.stored(now_ms)).map_err(|e| Unavailable(e.to_string()))?;
            pipe.hset(hash, instance, blob).ignore().pexpire(hash, KEY_TTL_MS as i64).ignore().hgetall(hash);
        }
        if items.is_empty() {
            pipe.cmd("PING").ignore();
        }
        let mut conn = self.conn.clone();
        let read: Vec<HashMap<String, Vec<u8>>> = tokio::time::timeout(TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| Unavailable("redis did not answer in time".into()))?
            .map_err(|e| Unavailable(format!("redis: {e}")))?;
        let mut answers = Vec::with_capacity(items.len());
        let mut cleanup = redis::pipe();
        let mut expired_any = false;
        for ((item, hash), fields) in items.iter().zip(&hashes).zip(&read) {
            let entries: Vec<(&str, S::Entry)> = fields
                .iter()
                .filter_map(|(instance, blob)| Some((instance.as_str(), S::entry(serde_json::from_slice(blob).ok()?))))
                .collect();
            let sum = others(entries.iter().map(|(i, u)| (*i, u)), instance, now_ms);
            answers.push(S::answer(item.name(), &sum.usage));
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
