//! Envoy's memory against the number of tenants it has seen: a fusebox Envoy is sent one request
//! from each of many distinct tenants, then left idle past the longest window, and its memory is
//! read before, after the requests, and after the idle time (when the tenants' states have been
//! swept from the state table). Envoy's allocator keeps freed pages for reuse unless told to
//! give them back (`memory_allocator_manager`, set for this scenario), so without it the
//! resident size (RSS) shows the high-water mark; `server.memory_allocated` is what Envoy holds
//! live.

use crate::procs::proc_status_kb;
use fusebox_integration::envoy_stat;
use serde::Serialize;
use std::time::{Duration, Instant};

const HELD: &str = "wasmcustom.fusebox.state.held";
const FREED: &str = "wasmcustom.fusebox.state.freed";
const FULL: &str = "wasmcustom.fusebox.state.full";
const COMPACTED: &str = "wasmcustom.fusebox.state.compacted";
/// Past the longest window (60 s) and the hold's margin, plus a generous margin for two sweep
/// passes (5 s each in this scenario) and the allocator's release.
const IDLE_WAIT: Duration = Duration::from_secs(160);

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Reading {
    pub rss_kb: u64,
    pub allocated_kb: u64,
    /// What tcmalloc holds from the system (`/memory` `total_physical_bytes`): allocated, plus
    /// freed pages not yet given back.
    pub allocator_physical_kb: u64,
    /// Free pages tcmalloc keeps mapped, and those it gave back to the system.
    pub pageheap_free_kb: u64,
    pub pageheap_unmapped_kb: u64,
    /// The Wasm VMs' linear memory (workers and singleton): it only grows, so it is their peak.
    pub wasm_kb: u64,
    /// Tenant states the slot table holds (as of the singleton's last sweep pass).
    pub states_held: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub tenants: u64,
    pub seconds_sending: f64,
    pub refused_state_full: u64,
    pub states_freed: u64,
    /// States kept as their budget alone (a budget limit spent this period outlives the rest).
    pub states_compacted: u64,
    pub start: Reading,
    pub after_requests: Reading,
    pub after_idle: Reading,
}

impl Figure {
    pub fn line(&self) -> String {
        let mb = |kb: u64| kb as f64 / 1024.0;
        format!(
            "memory after {} distinct tenants (one request each, {:.0} s): Envoy RSS {:.0} -> {:.0} -> {:.0} MB \
             (start, after requests, after idle), allocated {:.0} -> {:.0} -> {:.0} MB, allocator's pages {:.0} -> {:.0} -> {:.0} MB, \
             free pages kept {:.0} -> {:.0} -> {:.0} MB and given back {:.0} -> {:.0} -> {:.0} MB, \
             Wasm memory {:.0} -> {:.0} -> {:.0} MB; states held {} -> {} ({} freed, {} kept as their budget alone, {} refused state_full)\n",
            self.tenants,
            self.seconds_sending,
            mb(self.start.rss_kb),
            mb(self.after_requests.rss_kb),
            mb(self.after_idle.rss_kb),
            mb(self.start.allocated_kb),
            mb(self.after_requests.allocated_kb),
            mb(self.after_idle.allocated_kb),
            mb(self.start.allocator_physical_kb),
            mb(self.after_requests.allocator_physical_kb),
            mb(self.after_idle.allocator_physical_kb),
            mb(self.start.pageheap_free_kb),
            mb(self.after_requests.pageheap_free_kb),
            mb(self.after_idle.pageheap_free_kb),
            mb(self.start.pageheap_unmapped_kb),
            mb(self.after_requests.pageheap_unmapped_kb),
            mb(self.after_idle.pageheap_unmapped_kb),
            mb(self.start.wasm_kb),
            mb(self.after_requests.wasm_kb),
            mb(self.after_idle.wasm_kb),
            self.after_requests.states_held,
            self.after_idle.states_held,
            self.states_freed,
            self.states_compacted,
            self.refused_state_full,
        )
    }
}

/// Clients sending at once: enough to keep the one worker under test saturated.
const SENDERS: usize = 8;

/// Sends one request per token to `url`, from [`SENDERS`] threads on kept-alive connections;
/// returns how many were answered (any status: a refusal is counted by the filter's metrics).
pub fn send_each_once(url: &str, tokens: &[String], body: &str) -> Result<u64, String> {
    let answered = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for part in tokens.chunks(tokens.len().div_ceil(SENDERS).max(1)) {
            let answered = &answered;
            scope.spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                for token in part {
                    let sent = agent
                        .post(url)
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .send(body);
                    if let Ok(mut r) = sent {
                        let _ = r.body_mut().read_to_vec();
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match answered.into_inner() {
        0 => Err("no request was answered".into()),
        n => Ok(n),
    }
}

/// The running Envoy to measure.
pub struct Target<'a> {
    pub agent: &'a ureq::Agent,
    pub admin_port: u16,
    pub pid: u32,
}

impl Target<'_> {
    fn read(&self) -> Reading {
        let wasm = ["wasmcustom.fusebox.worker.wasm_memory_bytes", "wasmcustom.fusebox.singleton.wasm_memory_bytes"];
        let allocator = self.allocator();
        // Envoy writes these figures as strings of digits.
        let field = |name: &str| allocator.get(name).and_then(|v| v.as_str()?.parse::<u64>().ok()).unwrap_or(0);
        Reading {
            rss_kb: proc_status_kb(self.pid, "VmRSS").unwrap_or(0),
            allocated_kb: envoy_stat(self.agent, self.admin_port, "server.memory_allocated").unwrap_or(0) / 1024,
            allocator_physical_kb: field("total_physical_bytes") / 1024,
            pageheap_free_kb: field("pageheap_free") / 1024,
            pageheap_unmapped_kb: field("pageheap_unmapped") / 1024,
            wasm_kb: wasm.iter().map(|g| envoy_stat(self.agent, self.admin_port, g).unwrap_or(0)).sum::<u64>() / 1024,
            states_held: envoy_stat(self.agent, self.admin_port, HELD).unwrap_or(0),
        }
    }

    /// tcmalloc's figures from the admin `/memory` page, read once (`Null` if it cannot be read).
    fn allocator(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/memory", self.admin_port);
        let read = || -> Option<serde_json::Value> {
            let body = self.agent.get(&url).call().ok()?.body_mut().read_to_string().ok()?;
            serde_json::from_str(&body).ok()
        };
        read().unwrap_or_default()
    }

    fn stat(&self, name: &str) -> u64 {
        envoy_stat(self.agent, self.admin_port, name).unwrap_or(0)
    }

    /// Measures around `send` (which sends one request per tenant and returns how many).
    pub fn measure(&self, send: impl FnOnce() -> Result<u64, String>) -> Result<Figure, String> {
        // Let a sweep pass report the (empty) table first.
        std::thread::sleep(Duration::from_secs(3));
        let start = self.read();
        let began = Instant::now();
        let tenants = send()?;
        let seconds_sending = began.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(3));
        let after_requests = self.read();
        let deadline = Instant::now() + IDLE_WAIT;
        // Every state the requests left is freed, or kept as its budget alone.
        while Instant::now() < deadline && self.stat(FREED) + self.stat(COMPACTED) < after_requests.states_held {
            std::thread::sleep(Duration::from_secs(2));
        }
        std::thread::sleep(Duration::from_secs(3));
        Ok(Figure {
            tenants,
            seconds_sending,
            refused_state_full: self.stat(FULL),
            states_freed: self.stat(FREED),
            states_compacted: self.stat(COMPACTED),
            start,
            after_requests,
            after_idle: self.read(),
        })
    }
}
