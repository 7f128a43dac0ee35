//! Filter counters, visible in Envoy stats (e.g. `/stats/prometheus`). Names are fixed and
//! low-cardinality: no tenant ids in metric names.

use fusebox_engine::metric::Metric;
use fusebox_engine::run::RunLimit;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Declaration order is the index into [`Metrics`]; `ALL` lists them in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    RequestsAllowed,
    RequestsPassed,
    DeniedTokens10s,
    DeniedTokens60s,
    DeniedRequests10s,
    DeniedToolCalls60s,
    DeniedErrorRatio,
    DeniedConcurrency,
    DeniedBudgetTokensDay,
    DeniedBudgetCostMonth,
    DeniedRunSteps,
    DeniedRunDepth,
    DeniedRunDuration,
    DeniedRunTokens,
    DeniedRunCapacity,
    DeniedReserved,
    DeniedBreakerOpen,
    WouldDeny,
    Unauthenticated,
    TokensInput,
    TokensOutput,
    CostMicros,
    UsageMissing,
    UsageMalformed,
    UsageAnomalies,
    UsageEncoded,
    ToolCalls,
    UpstreamErrorEvents,
    UsageInjected,
    InjectSkipped,
    MaxTokensClamped,
    BreakerTrips,
    BreakerTransitions,
    RunTrips,
    StreamsTerminated,
    StoreErrors,
    StoreCorrupt,
    PolicyUpdates,
    PolicyRejected,
    PolicyPollFailures,
    DeniedKillSwitch,
    EventsShipped,
    EventsDropped,
    EventsShipFailures,
}

impl Counter {
    /// The denial counter for a run limit.
    pub fn denied_run(limit: RunLimit) -> Counter {
        match limit {
            RunLimit::Steps => Counter::DeniedRunSteps,
            RunLimit::Depth => Counter::DeniedRunDepth,
            RunLimit::Duration => Counter::DeniedRunDuration,
            RunLimit::Tokens => Counter::DeniedRunTokens,
            RunLimit::Capacity => Counter::DeniedRunCapacity,
        }
    }

    /// The denial counter for a metric.
    pub fn denied(metric: Metric) -> Counter {
        match metric {
            Metric::Tokens10s => Counter::DeniedTokens10s,
            Metric::Tokens60s => Counter::DeniedTokens60s,
            Metric::Requests10s => Counter::DeniedRequests10s,
            Metric::ToolCalls60s => Counter::DeniedToolCalls60s,
            Metric::ErrorRatio => Counter::DeniedErrorRatio,
            Metric::Concurrency => Counter::DeniedConcurrency,
        }
    }

    const ALL: [Counter; 44] = [
        Counter::RequestsAllowed,
        Counter::RequestsPassed,
        Counter::DeniedTokens10s,
        Counter::DeniedTokens60s,
        Counter::DeniedRequests10s,
        Counter::DeniedToolCalls60s,
        Counter::DeniedErrorRatio,
        Counter::DeniedConcurrency,
        Counter::DeniedBudgetTokensDay,
        Counter::DeniedBudgetCostMonth,
        Counter::DeniedRunSteps,
        Counter::DeniedRunDepth,
        Counter::DeniedRunDuration,
        Counter::DeniedRunTokens,
        Counter::DeniedRunCapacity,
        Counter::DeniedReserved,
        Counter::DeniedBreakerOpen,
        Counter::WouldDeny,
        Counter::Unauthenticated,
        Counter::TokensInput,
        Counter::TokensOutput,
        Counter::CostMicros,
        Counter::UsageMissing,
        Counter::UsageMalformed,
        Counter::UsageAnomalies,
        Counter::UsageEncoded,
        Counter::ToolCalls,
        Counter::UpstreamErrorEvents,
        Counter::UsageInjected,
        Counter::InjectSkipped,
        Counter::MaxTokensClamped,
        Counter::BreakerTrips,
        Counter::BreakerTransitions,
        Counter::RunTrips,
        Counter::StreamsTerminated,
        Counter::StoreErrors,
        Counter::StoreCorrupt,
        Counter::PolicyUpdates,
        Counter::PolicyRejected,
        Counter::PolicyPollFailures,
        Counter::DeniedKillSwitch,
        Counter::EventsShipped,
        Counter::EventsDropped,
        Counter::EventsShipFailures,
    ];

    /// Counters moved on (almost) every request: added up in the worker and flushed to Envoy on
    /// its 1 s tick, since a hostcall costs more than the rest of the bookkeeping. The others
    /// are rare and go to Envoy at once.
    fn is_batched(self) -> bool {
        matches!(
            self,
            Counter::RequestsAllowed
                | Counter::RequestsPassed
                | Counter::TokensInput
                | Counter::TokensOutput
                | Counter::CostMicros
                | Counter::ToolCalls
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Counter::RequestsAllowed => "fusebox.requests.allowed",
            Counter::RequestsPassed => "fusebox.requests.passed",
            Counter::DeniedTokens10s => "fusebox.requests.denied.tokens_10s",
            Counter::DeniedTokens60s => "fusebox.requests.denied.tokens_60s",
            Counter::DeniedRequests10s => "fusebox.requests.denied.requests_10s",
            Counter::DeniedToolCalls60s => "fusebox.requests.denied.tool_calls_60s",
            Counter::DeniedErrorRatio => "fusebox.requests.denied.error_ratio",
            Counter::DeniedConcurrency => "fusebox.requests.denied.concurrency",
            Counter::DeniedBudgetTokensDay => "fusebox.requests.denied.budget_tokens_day",
            Counter::DeniedBudgetCostMonth => "fusebox.requests.denied.budget_cost_month",
            Counter::DeniedRunSteps => "fusebox.requests.denied.run_steps",
            Counter::DeniedRunDepth => "fusebox.requests.denied.run_depth",
            Counter::DeniedRunDuration => "fusebox.requests.denied.run_duration",
            Counter::DeniedRunTokens => "fusebox.requests.denied.run_tokens",
            Counter::DeniedRunCapacity => "fusebox.requests.denied.run_capacity",
            Counter::DeniedReserved => "fusebox.requests.denied.reserved",
            Counter::DeniedBreakerOpen => "fusebox.requests.denied.breaker_open",
            Counter::WouldDeny => "fusebox.requests.would_deny",
            Counter::Unauthenticated => "fusebox.requests.unauthenticated",
            Counter::TokensInput => "fusebox.tokens.input",
            Counter::TokensOutput => "fusebox.tokens.output",
            Counter::CostMicros => "fusebox.cost.micros",
            Counter::UsageMissing => "fusebox.usage.missing",
            Counter::UsageMalformed => "fusebox.usage.malformed",
            Counter::UsageAnomalies => "fusebox.usage.anomalies",
            Counter::UsageEncoded => "fusebox.usage.encoded",
            Counter::ToolCalls => "fusebox.usage.tool_calls",
            Counter::UpstreamErrorEvents => "fusebox.usage.upstream_error_events",
            Counter::UsageInjected => "fusebox.usage.injected",
            Counter::InjectSkipped => "fusebox.usage.inject_skipped",
            Counter::MaxTokensClamped => "fusebox.requests.max_tokens_clamped",
            Counter::BreakerTrips => "fusebox.breaker.trips",
            Counter::BreakerTransitions => "fusebox.breaker.transitions",
            Counter::RunTrips => "fusebox.runs.trips",
            Counter::StreamsTerminated => "fusebox.streams.terminated",
            Counter::StoreErrors => "fusebox.store.errors",
            Counter::StoreCorrupt => "fusebox.store.corrupt",
            Counter::PolicyUpdates => "fusebox.policy.updates",
            Counter::PolicyRejected => "fusebox.policy.rejected",
            Counter::PolicyPollFailures => "fusebox.policy.poll_failures",
            Counter::DeniedKillSwitch => "fusebox.requests.denied.kill_switch",
            Counter::EventsShipped => "fusebox.events.shipped",
            Counter::EventsDropped => "fusebox.events.dropped",
            Counter::EventsShipFailures => "fusebox.events.ship_failures",
        }
    }
}

/// Metric ids defined once per VM.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Indexed by `Counter as usize`; `None` where defining the metric failed.
    ids: Vec<Option<u32>>,
    /// Batched counts not yet flushed, by the same index.
    pending: std::cell::RefCell<Vec<u64>>,
}

impl Metrics {
    pub fn define() -> Metrics {
        let ids: Vec<Option<u32>> = Counter::ALL
            .iter()
            .map(|c| match hostcalls::define_metric(MetricType::Counter, c.name()) {
                Ok(id) => Some(id),
                Err(s) => {
                    log::warn!("fusebox: define_metric {} failed: {s:?}", c.name());
                    None
                }
            })
            .collect();
        Metrics { pending: std::cell::RefCell::new(vec![0; ids.len()]), ids }
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
        log::debug!("fusebox: increment_metric {id} failed: {s:?}");
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
        let id = hostcalls::define_metric(MetricType::Gauge, name)
            .map_err(|s| log::warn!("fusebox: define_metric {name} failed: {s:?}"))
            .ok();
        MemoryGauge { id, reported: std::cell::Cell::new(0) }
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
