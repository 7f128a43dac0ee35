//! What a fleet sync costs control at scale: one Envoy's sync of 100 000 active keys (each with
//! a few token buckets, a request bucket, a slot in flight and a day budget), answered with the
//! rest of the fleet's usage. Reported: bytes each way, and control's CPU and wall time per sync.

use fusebox_engine::fleet::wire::{KeyUsage, SyncRequest, WireUsage};
use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub(crate) const KEYS: usize = 100_000;
const SYNCS: u32 = 4;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SyncCost {
    /// Where control keeps the fleet counters: `memory` or `redis`.
    pub(crate) store: &'static str,
    pub(crate) keys: usize,
    pub(crate) request_bytes: usize,
    pub(crate) reply_bytes: usize,
    pub(crate) control_cpu_ms: f64,
    /// Redis's own CPU per sync, when the store is Redis.
    pub(crate) redis_cpu_ms: Option<f64>,
    pub(crate) wall_ms: f64,
}

impl SyncCost {
    pub(crate) fn line(&self) -> String {
        let redis = self.redis_cpu_ms.map(|ms| format!(" + Redis {ms:.0} ms")).unwrap_or_default();
        format!(
            "fleet sync of {} keys ({}): {:.1} MB out, {:.1} MB back, control CPU {:.0} ms{redis}, {:.0} ms wall per sync\n",
            self.keys,
            self.store,
            self.request_bytes as f64 / 1e6,
            self.reply_bytes as f64 / 1e6,
            self.control_cpu_ms,
            self.wall_ms
        )
    }
}

fn request(node: &str, now_s: u64) -> SyncRequest {
    let usage = WireUsage {
        tokens: vec![(now_s - 2, 40), (now_s - 1, 60), (now_s, 63)],
        requests: vec![(now_s, 1)],
        in_flight: 1,
        reserved_tokens: 128,
        day: u32::try_from(now_s / 86_400).unwrap_or(0),
        tokens_day: 5_000,
        ..WireUsage::default()
    };
    let keys = (0..KEYS).map(|i| KeyUsage { key: format!("bench-tenant-{i}"), usage: usage.clone() }).collect();
    SyncRequest { node: node.into(), instance: format!("{node}/1"), keys, runs: vec![] }
}

/// CPU seconds a process has used (user + system), from `/proc`.
fn cpu_s(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 ticks a second.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// Syncs as two Envoys taking turns, so every answer carries the other's usage of every key.
/// `store` names control's store; its pid, if it is a process of its own, is measured too.
pub(crate) fn measure(
    agent: &ureq::Agent,
    control_port: u16,
    control_pid: u32,
    token: &str,
    (store, store_pid): (&'static str, Option<u32>),
) -> Result<SyncCost, String> {
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let bodies: Vec<Vec<u8>> = ["bench-a", "bench-b"]
        .iter()
        .map(|n| serde_json::to_vec(&request(n, now_s)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let url = format!("http://127.0.0.1:{control_port}/v1/fleet/sync");
    let post = |body: &[u8]| -> Result<usize, String> {
        let mut r = agent
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        let reply = r.body_mut().with_config().limit(1 << 30).read_to_vec().map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("sync answered {}: {}", r.status(), String::from_utf8_lossy(&reply)));
        }
        Ok(reply.len())
    };
    let mut reply_bytes = 0;
    for body in &bodies {
        reply_bytes = post(body)?; // warm: both instances stored
    }
    let store_cpu = || store_pid.map(cpu_s).transpose();
    let (cpu0, store0, t0) = (cpu_s(control_pid)?, store_cpu()?, Instant::now());
    for i in 0..SYNCS {
        let body = bodies.get(i as usize % 2).ok_or("no body")?;
        reply_bytes = post(body)?;
    }
    let (cpu, wall) = (cpu_s(control_pid)? - cpu0, t0.elapsed());
    let per_sync = |s: f64| s * 1000.0 / f64::from(SYNCS);
    let redis_cpu_ms = store_cpu()?.zip(store0).map(|(now, then)| per_sync(now - then));
    Ok(SyncCost {
        store,
        redis_cpu_ms,
        keys: KEYS,
        request_bytes: bodies.first().map_or(0, Vec::len),
        reply_bytes,
        control_cpu_ms: per_sync(cpu),
        wall_ms: (wall / SYNCS).as_secs_f64() * 1000.0,
    })
}
