//! The fleet sync: every `interval_ms` the singleton sends control this Envoy's own usage of
//! each state key its workers used recently and writes the rest of the fleet's usage, from
//! the answer, beside the local state (`TenantState::fleet`), where admission counts it.
//! Runs travel the same way: this Envoy's part of each run tree it served recently, written
//! back as the fleet's part into the root run's record (`RunRecord::fleet`).
//! Without a successful sync for `fallback_after_ms` the workers enforce this Envoy's share of
//! every limit instead, until a sync succeeds again (see `fusebox_engine::fleet`).

use super::call::ControlCalls;
use crate::fleet_keys;
use crate::host;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::runs;
use crate::states::{self, Hold, Missing};
use crate::store::{self, Keys};
use fusebox_engine::fleet::wire::{self, KeyUsage, SyncReply, SyncRequest, WireUsage};
use fusebox_engine::fleet::{
    parse_run_name, ActiveKeys, Counting, FleetConfig, FleetUsage, RunUsage, SyncHealth, ACTIVE_FOR_MS,
};
use std::rc::Rc;
use std::time::Duration;

pub struct FleetSync {
    config: FleetConfig,
    keys: Keys,
    metrics: Rc<Metrics>,
    queue: Option<u32>,
    active: ActiveKeys,
    health: SyncHealth,
    node: String,
    /// This Envoy in the fleet: `<node>/<first start>`, the owner of the usage it sends.
    instance: String,
    /// The sync on its way (its callback always comes, answered or timed out).
    in_flight: Option<u32>,
    next_sync_ms: u64,
    /// Why the last sync failed, for the one log line a fallback writes.
    last_error: String,
    fallback: Gauge,
    active_gauge: Gauge,
}

impl FleetSync {
    pub fn new(config: FleetConfig, keys: Keys, metrics: Rc<Metrics>) -> FleetSync {
        FleetSync {
            health: SyncHealth::new(0, config.fallback_after_ms),
            config,
            keys,
            metrics,
            queue: None,
            active: ActiveKeys::new(wire::MAX_KEYS),
            node: String::new(),
            instance: String::new(),
            in_flight: None,
            next_sync_ms: 0,
            last_error: String::new(),
            fallback: Gauge::define("fusebox.fleet.fallback"),
            active_gauge: Gauge::define("fusebox.fleet.keys"),
        }
    }

    pub fn interval_ms(&self) -> u64 {
        self.config.interval_ms
    }

    /// Registers the workers' queue and takes this Envoy's instance name.
    pub fn start(&mut self, namespace: &str, node: &str) {
        let now_ms = host::now_ms();
        self.health = SyncHealth::new(now_ms, self.config.fallback_after_ms);
        self.node = node.to_string();
        self.instance = self.instance_name(now_ms);
        self.queue = host::register_queue(&fleet_keys::queue_name(namespace));
        if let Err(s) = store::publish_fleet_share(&self.keys, 1) {
            log::error!("publishing the fleet share failed: {s:?}");
        }
        self.fallback.set(0);
        let c = &self.config;
        log::info!(
            "counting with the fleet as '{}': {} every {} ms, falling back to 1/{} of every limit after {} ms without",
            self.instance,
            c.path,
            c.interval_ms,
            c.expected_envoys,
            c.fallback_after_ms
        );
    }

    /// The name this Envoy process has in the fleet. Shared data outlives a singleton reload,
    /// and so does the usage in it: a reloaded singleton keeps the name, or control would
    /// count that usage twice (once under each name) until it expired.
    fn instance_name(&self, now_ms: u64) -> String {
        let kept = store::read_string(&self.keys.fleet_instance)
            .filter(|i| i.strip_prefix(self.node.as_str()).is_some_and(|rest| rest.starts_with('/')));
        if let Some(instance) = kept {
            return instance;
        }
        let instance = format!("{}/{now_ms}", self.node);
        if let Err(s) = host::shared_set(&self.keys.fleet_instance, instance.as_bytes(), None) {
            log::warn!("keeping the fleet instance name failed: {s:?}");
        }
        instance
    }

    /// Whether `queue` is the workers' key queue.
    pub fn owns_queue(&self, queue: u32) -> bool {
        self.queue == Some(queue)
    }

    /// Whether `token` is this sync's call.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// Takes in the keys the workers used.
    pub fn drain_queue(&mut self, now_ms: u64) {
        let Some(queue) = self.queue else { return };
        let before = self.active.refused();
        while let Some(bytes) = host::dequeue(queue) {
            for key in bytes.split(|&b| b == b'\n').filter_map(|k| std::str::from_utf8(k).ok()) {
                if wire::is_valid_key(key) || parse_run_name(key).is_some() {
                    self.active.touch(key, now_ms);
                }
            }
        }
        let refused = self.active.refused() - before;
        if refused > 0 {
            if before == 0 {
                log::warn!("more than {} keys active: new ones are counted by this Envoy alone", wire::MAX_KEYS);
            }
            self.metrics.add(Counter::FleetKeysRefused, refused);
        }
    }

    /// The singleton's tick: fall back if syncs have failed for too long, sync when due.
    pub fn on_tick(&mut self, calls: &ControlCalls, now_ms: u64) {
        self.drain_queue(now_ms);
        if self.health.check(now_ms) == Some(Counting::LocalShare) {
            self.switched(Counting::LocalShare);
        }
        if now_ms >= self.next_sync_ms && self.in_flight.is_none() {
            self.next_sync_ms = now_ms.saturating_add(self.config.interval_ms);
            self.sync(calls, now_ms);
        }
    }

    fn sync(&mut self, calls: &ControlCalls, now_ms: u64) {
        self.active.expire(now_ms);
        let mut keys = Vec::with_capacity(self.active.len());
        let mut runs = Vec::new();
        let mut busy = Vec::new();
        for name in self.active.keys() {
            if parse_run_name(name).is_some() {
                match runs::root_record(&self.keys, name) {
                    Ok(Some((_, record))) => runs.push(RunUsage { run: name.to_string(), part: record.own_part() }),
                    Ok(None) => {}
                    Err(e) => log::debug!("reading run {name} for the fleet sync failed: {e:?}"),
                }
                continue;
            }
            let state = match states::read(&self.keys, name, None) {
                Ok(Some((_, s))) => s,
                Ok(None) => continue, // its state was freed: nothing of it here
                Err(e) => {
                    log::debug!("reading {name} for the fleet sync failed: {e:?}");
                    continue;
                }
            };
            let usage = state.local_usage(now_ms);
            if usage.in_flight > 0 {
                busy.push(name.to_string()); // a long stream keeps its key active
            }
            keys.push(KeyUsage { key: name.to_string(), usage: WireUsage::from(&usage) });
        }
        busy.iter().for_each(|k| {
            self.active.touch(k, now_ms);
        });
        self.active_gauge.set(self.active.len() as u64);
        let request = SyncRequest { node: self.node.clone(), instance: self.instance.clone(), keys, runs };
        let Ok(body) = serde_json::to_vec(&request) else { return };
        let c = &calls.config;
        let mut headers = calls.headers("POST", &self.config.path);
        headers.push(("content-type", "application/json"));
        let timeout = Duration::from_millis(self.config.fallback_after_ms);
        match host::http_call_with_body(&c.cluster, headers, &body, timeout) {
            Ok(token) => self.in_flight = Some(token),
            Err(s) => self.failed(format!("cannot call cluster '{}': {s:?}", c.cluster)),
        }
    }

    /// Handles control's answer: writes each key's fleet usage into its state.
    pub fn on_response(&mut self, body_size: usize) {
        self.in_flight = None;
        let reply = match host::http_call_header(":status").as_deref() {
            Some("200") => serde_json::from_slice::<SyncReply>(&host::http_call_body(body_size).unwrap_or_default())
                .map_err(|e| format!("control answered an unreadable sync: {e}")),
            Some(other) => Err(format!("control answered {other}")),
            None => Err("control unreachable or timed out".to_string()),
        };
        let reply = match reply {
            Ok(r) => r,
            Err(why) => return self.failed(why),
        };
        let now_ms = host::now_ms();
        for k in reply.keys {
            let empty = k.usage.is_empty();
            if !wire::is_valid_key(&k.key) || !self.active.answered(&k.key, empty) {
                continue;
            }
            let fleet = if empty { FleetUsage::default() } else { k.usage.to_usage(now_ms) };
            let written = states::update(&self.keys, &k.key, None, Missing::Skip, Hold::Keep, now_ms, |s| {
                s.fleet = fleet.clone();
            });
            if let Err(e) = written {
                self.metrics.inc(Counter::StoreErrors);
                log::debug!("writing the fleet usage of {} failed: {e:?}", k.key);
            }
        }
        for r in reply.runs {
            self.write_run(r, now_ms);
        }
        self.metrics.inc(Counter::FleetSyncs);
        if self.health.succeeded(now_ms) == Some(Counting::Fleet) {
            self.switched(Counting::Fleet);
        }
    }

    /// Writes the rest of the fleet's part of a run into its root record here. A run the
    /// fleet saw lately stays synced (and alive here) even while this Envoy sees none of it.
    fn write_run(&mut self, r: RunUsage, now_ms: u64) {
        if parse_run_name(&r.run).is_none() {
            return;
        }
        let empty = r.part.is_empty();
        if !self.active.answered(&r.run, empty) {
            return;
        }
        if now_ms.saturating_sub(r.part.last_seen_ms) < ACTIVE_FOR_MS {
            self.active.touch(&r.run, now_ms);
        }
        let written = match runs::root_record(&self.keys, &r.run) {
            Ok(Some((key, _))) => runs::write_fleet_part(&self.keys, &key, &r.run, r.part),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.metrics.inc(Counter::StoreErrors);
            log::debug!("writing the fleet part of run {} failed: {e:?}", r.run);
        }
    }

    fn failed(&mut self, why: String) {
        self.metrics.inc(Counter::FleetSyncFailures);
        self.last_error = why;
    }

    /// Tells the workers (the share), the operator (one log line) and the metrics.
    fn switched(&mut self, to: Counting) {
        let n = self.config.expected_envoys;
        let share = match to {
            Counting::Fleet => {
                log::info!("fleet counts are back: enforcing the whole of every limit, counted fleet-wide");
                1
            }
            Counting::LocalShare => {
                log::warn!(
                    "fleet counts unavailable for {} ms ({}): enforcing this Envoy's share, 1/{n} of every window and concurrency cap",
                    self.config.fallback_after_ms,
                    self.last_error
                );
                self.metrics.inc(Counter::FleetFallbacks);
                n
            }
        };
        self.fallback.set(u64::from(to == Counting::LocalShare));
        if let Err(s) = store::publish_fleet_share(&self.keys, share) {
            log::error!("publishing the fleet share failed: {s:?}");
        }
    }
}
