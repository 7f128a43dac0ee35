//! The filter's counters and their names in Envoy stats (e.g. `/stats/prometheus`). Names are
//! fixed and low-cardinality: no tenant ids in metric names.

use fusebox_engine::admission::DenyCause;
use fusebox_engine::budget::Budget;
use fusebox_engine::metric::Metric;
use fusebox_engine::policy::Limit;
use fusebox_engine::run::RunLimit;

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
    UsageEstimatedTokens,
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
    FleetSyncs,
    FleetSyncFailures,
    FleetFallbacks,
    FleetKeysRefused,
    StateFull,
    StateFreed,
    StateCompacted,
    RunsFreed,
    ShadowTokens10s,
    ShadowTokens60s,
    ShadowRequests10s,
    ShadowToolCalls60s,
    ShadowErrorRatio,
    ShadowConcurrency,
    ShadowBudgetTokensDay,
    ShadowBudgetCostMonth,
    ShadowRunSteps,
    ShadowRunDepth,
    ShadowRunDuration,
    ShadowRunTokens,
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

    /// The denial counter for a refusal by the tenant's state.
    pub fn for_denial(cause: DenyCause) -> Counter {
        match cause {
            DenyCause::Tripped(t) => Counter::denied(t.metric),
            DenyCause::ProbesBusy => Counter::DeniedBreakerOpen,
            DenyCause::Concurrency { .. } => Counter::denied(Metric::Concurrency),
            DenyCause::Budget { budget: Budget::TokensDay, .. } => Counter::DeniedBudgetTokensDay,
            DenyCause::Budget { budget: Budget::CostMonth, .. } => Counter::DeniedBudgetCostMonth,
            DenyCause::Reserved { .. } => Counter::DeniedReserved,
            DenyCause::KillSwitch => Counter::DeniedKillSwitch,
        }
    }

    /// The counter of requests a shadowed limit would have refused.
    pub fn shadow_denied(limit: Limit) -> Counter {
        match limit {
            Limit::Tokens10s => Counter::ShadowTokens10s,
            Limit::Tokens60s => Counter::ShadowTokens60s,
            Limit::Requests10s => Counter::ShadowRequests10s,
            Limit::ToolCalls60s => Counter::ShadowToolCalls60s,
            Limit::ErrorRatio => Counter::ShadowErrorRatio,
            Limit::Concurrency => Counter::ShadowConcurrency,
            Limit::BudgetTokensDay => Counter::ShadowBudgetTokensDay,
            Limit::BudgetCostMonth => Counter::ShadowBudgetCostMonth,
            Limit::RunSteps => Counter::ShadowRunSteps,
            Limit::RunDepth => Counter::ShadowRunDepth,
            Limit::RunDurationS => Counter::ShadowRunDuration,
            Limit::RunTokens => Counter::ShadowRunTokens,
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

    pub(crate) const ALL: [Counter; 65] = [
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
        Counter::UsageEstimatedTokens,
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
        Counter::FleetSyncs,
        Counter::FleetSyncFailures,
        Counter::FleetFallbacks,
        Counter::FleetKeysRefused,
        Counter::StateFull,
        Counter::StateFreed,
        Counter::StateCompacted,
        Counter::RunsFreed,
        Counter::ShadowTokens10s,
        Counter::ShadowTokens60s,
        Counter::ShadowRequests10s,
        Counter::ShadowToolCalls60s,
        Counter::ShadowErrorRatio,
        Counter::ShadowConcurrency,
        Counter::ShadowBudgetTokensDay,
        Counter::ShadowBudgetCostMonth,
        Counter::ShadowRunSteps,
        Counter::ShadowRunDepth,
        Counter::ShadowRunDuration,
        Counter::ShadowRunTokens,
    ];

    /// Counters moved on (almost) every request: added up in the worker and flushed to Envoy on
    /// its 1 s tick, since a hostcall costs more than the rest of the bookkeeping. The others
    /// are rare and go to Envoy at once.
    pub(crate) fn is_batched(self) -> bool {
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
            Counter::UsageEstimatedTokens => "fusebox.usage.estimated_tokens",
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
            Counter::FleetSyncs => "fusebox.fleet.syncs",
            Counter::FleetSyncFailures => "fusebox.fleet.sync_failures",
            Counter::FleetFallbacks => "fusebox.fleet.fallbacks",
            Counter::FleetKeysRefused => "fusebox.fleet.keys_refused",
            Counter::StateFull => "fusebox.state.full",
            Counter::StateFreed => "fusebox.state.freed",
            Counter::StateCompacted => "fusebox.state.compacted",
            Counter::RunsFreed => "fusebox.runs.freed",
            Counter::ShadowTokens10s => "fusebox.requests.shadow_denied.tokens_10s",
            Counter::ShadowTokens60s => "fusebox.requests.shadow_denied.tokens_60s",
            Counter::ShadowRequests10s => "fusebox.requests.shadow_denied.requests_10s",
            Counter::ShadowToolCalls60s => "fusebox.requests.shadow_denied.tool_calls_60s",
            Counter::ShadowErrorRatio => "fusebox.requests.shadow_denied.error_ratio",
            Counter::ShadowConcurrency => "fusebox.requests.shadow_denied.concurrency",
            Counter::ShadowBudgetTokensDay => "fusebox.requests.shadow_denied.budget_tokens_day",
            Counter::ShadowBudgetCostMonth => "fusebox.requests.shadow_denied.budget_cost_month",
            Counter::ShadowRunSteps => "fusebox.requests.shadow_denied.run_steps",
            Counter::ShadowRunDepth => "fusebox.requests.shadow_denied.run_depth",
            Counter::ShadowRunDuration => "fusebox.requests.shadow_denied.run_duration",
            Counter::ShadowRunTokens => "fusebox.requests.shadow_denied.run_tokens",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::breaker::Trip;

    #[test]
    fn every_counter_is_listed_once_in_declaration_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
    }

    #[test]
    fn counter_names_are_distinct_and_namespaced() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("fusebox.")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn a_shadowed_refusal_moves_the_shadow_counter_named_for_the_same_reason() {
        for limit in Limit::ALL {
            let name = Counter::shadow_denied(limit).name();
            assert_eq!(name, format!("fusebox.requests.shadow_denied.{}", limit.reason()));
        }
    }

    #[test]
    fn each_refusal_moves_the_counter_named_for_its_reason() {
        let tripped = DenyCause::Tripped(Trip { metric: Metric::Tokens60s, threshold: 1, observed: 2 });
        assert_eq!(Counter::for_denial(tripped).name(), "fusebox.requests.denied.tokens_60s");
        assert_eq!(Counter::for_denial(DenyCause::ProbesBusy), Counter::DeniedBreakerOpen);
        let cap = DenyCause::Concurrency { limit: 1, in_flight: 1 };
        assert_eq!(Counter::for_denial(cap), Counter::DeniedConcurrency);
        let month = DenyCause::Budget { budget: Budget::CostMonth, limit: 1, used: 1 };
        assert_eq!(Counter::for_denial(month), Counter::DeniedBudgetCostMonth);
        let reserved = DenyCause::Reserved { metric: Metric::Tokens10s, threshold: 1, observed: 2 };
        assert_eq!(Counter::for_denial(reserved), Counter::DeniedReserved);
        assert_eq!(Counter::for_denial(DenyCause::KillSwitch).name(), "fusebox.requests.denied.kill_switch");
        assert_eq!(Counter::denied_run(RunLimit::Capacity).name(), "fusebox.requests.denied.run_capacity");
    }

    #[test]
    fn every_counter_is_documented_in_the_operations_guide_by_its_full_name() {
        let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md")).unwrap();
        for c in Counter::ALL {
            assert!(guide.contains(&format!("`{}`", c.name())), "docs/OPERATIONS.md lists no `{}`", c.name());
        }
    }
}
