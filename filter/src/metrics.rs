//! Filter counters in Envoy: defined once per VM, the busy ones summed in the worker and
//! flushed on its tick, the rest sent at once; and the Wasm memory gauge.

pub use crate::counter::Counter;
use fusebox_engine::telemetry;
use fusebox_engine::usage::Usage;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids defined once per VM.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Indexed by `Counter as usize`; `None` where defining the metric failed.
    ids: Vec<Option<u32>>,
    /// Batched counts not yet flushed, by the same index.
    pending: std::cell::RefCell<Vec<u64>>,
    /// `gen_ai.client.token.usage` for input and output tokens (see `fusebox_engine::telemetry`).
    token_usage: [Option<u32>; 2],
}

impl Metrics {
    pub fn define() -> Metrics {
        let ids: Vec<Option<u32>> = Counter::ALL
            .iter()
            .map(|c| match hostcalls::define_metric(MetricType::Counter, c.name()) {
                Ok(id) => Some(id),
                Err(s) => {
                    log::warn!("define_metric {} failed: {s:?}", c.name());
                    None
                }
            })
            .collect();
        let histogram = |name: &str| {
            hostcalls::define_metric(MetricType::Histogram, name)
                .map_err(|s| log::warn!("define_metric {name} failed: {s:?}"))
                .ok()
        };
        let token_usage = [histogram(telemetry::TOKEN_USAGE_INPUT), histogram(telemetry::TOKEN_USAGE_OUTPUT)];
        Metrics { pending: std::cell::RefCell::new(vec![0; ids.len()]), ids, token_usage }
    }

    /// One call's reported usage into the GenAI token-usage histograms.
    pub fn record_token_usage(&self, usage: Usage) {
        for (id, tokens) in self.token_usage.iter().zip([usage.input_tokens, usage.output_tokens]) {
            if let Some(id) = id {
                if let Err(s) = hostcalls::record_metric(*id, tokens) {
                    log::debug!("record_metric {id} failed: {s:?}");
                }
            }
        }
    }

    /// Sends the batched counts to Envoy (the worker's tick).
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        for (i, n) in pending.iter_mut().enumerate().filter(|(_, n)| **n > 0) {
            if let Some(Some(id)) = self.ids.get(i) {
                send(*id, std::mem::take(n));
            }
        }
    }

    pub fn add(&self, counter: Counter, n: u64) {
        let Some(Some(id)) = self.ids.get(counter as usize) else {
            return;
        };
        if n == 0 {
            return;
        }
        if counter.is_batched() {
            if let Some(p) = self.pending.borrow_mut().get_mut(counter as usize) {
                *p = p.saturating_add(n);
            }
        } else {
            send(*id, n);
        }
    }

    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }
}

fn send(id: u32, n: u64) {
    if let Err(s) = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX)) {
        log::debug!("increment_metric {id} failed: {s:?}");
    }
}

/// A gauge one VM owns and sets (the singleton's fleet figures).
#[derive(Debug)]
pub struct Gauge {
    id: Option<u32>,
}

/// A gauge's id, or `None` (logged) where Envoy refuses to define it.
fn define_gauge(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Gauge, name).map_err(|s| log::warn!("define_metric {name} failed: {s:?}")).ok()
}

impl Gauge {
    pub fn define(name: &str) -> Gauge {
        Gauge { id: define_gauge(name) }
    }

    pub fn set(&self, value: u64) {
        if let Some(id) = self.id {
            if let Err(s) = hostcalls::record_metric(id, value) {
                log::debug!("record_metric {id} failed: {s:?}");
            }
        }
    }
}

/// The VM's linear memory, as a gauge summed over every VM that reports it (each adds the
/// change since its last report), so `fusebox.worker.wasm_memory_bytes` is the total of all
/// workers. Wasm memory only grows, so the figure is also each VM's peak.
#[derive(Debug)]
pub struct MemoryGauge {
    id: Option<u32>,
    reported: std::cell::Cell<u64>,
}

impl MemoryGauge {
    pub fn define(name: &str) -> MemoryGauge {
        MemoryGauge { id: define_gauge(name), reported: std::cell::Cell::new(0) }
    }

    pub fn report(&self) {
        let Some(id) = self.id else { return };
        let now = linear_memory_bytes();
        let delta = i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(self.reported.get()).unwrap_or(i64::MAX);
        if delta != 0 && hostcalls::increment_metric(id, delta).is_ok() {
            self.reported.set(now);
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn linear_memory_bytes() -> u64 {
    (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65_536)
}

#[cfg(not(target_arch = "wasm32"))]
fn linear_memory_bytes() -> u64 {
    0
}
