//! The end of a counted request: what its response body said goes into the tenant's state,
//! its run's totals, the metrics and control's usage ledger.

use super::lifecycle::{Counting, Response};
use super::report;
use super::Worker;
use crate::active::ActivePolicy;
use crate::host;
use crate::metrics::Counter;
use crate::runs;
use fusebox_engine::admission::{self, BodyKind, Ending};
use fusebox_engine::breaker::ProbeEnd;
use fusebox_engine::event::{Event, UsageOf};
use fusebox_engine::telemetry;
use fusebox_engine::usage::{BodyScanner, CacheTokens, Summary};

pub fn settle(worker: &Worker, active: &ActivePolicy, c: Counting, end: ProbeEnd) {
    let status = c.response.status();
    let (summary, ending) = match c.response {
        Response::Reading { scanner, bytes, .. } => {
            let body = match &scanner {
                Some(BodyScanner::Sse(_)) => BodyKind::Sse,
                Some(BodyScanner::Json(_)) => BodyKind::Json,
                None => BodyKind::Unreadable,
            };
            let summary = scanner.map(|mut s| s.finish()).unwrap_or_default();
            (summary, Ending { status, body, bytes })
        }
        Response::Awaiting => (Summary::default(), Ending { status: None, body: BodyKind::Json, bytes: 0 }),
    };
    let a = &c.admitted;
    record_metrics(worker, &summary, status, end, &a.tenant);
    let charge = a.charge(ending, &summary);
    // Tokens counted are tokens charged, reported or estimated.
    worker.metrics.add(Counter::TokensInput, charge.usage.input_tokens);
    worker.metrics.add(Counter::TokensOutput, charge.usage.output_tokens);
    if charge.estimated {
        worker.metrics.add(Counter::UsageEstimatedTokens, charge.usage.total());
        log::info!(
            "response for tenant '{}' ended without usage; charged an estimate of {} tokens",
            a.tenant,
            charge.usage.total()
        );
    }
    if worker.config.gen_ai_telemetry {
        let reported = (!charge.estimated).then_some(charge.usage);
        for (attr, value) in telemetry::finished(a.estimate.model(), summary.model.as_str(), reported) {
            host::set_filter_state(attr.filter_state, &value);
        }
        if let Some(u) = reported {
            worker.metrics.record_token_usage(u);
        }
    }
    // An estimate knows nothing of the provider's cache; a reported charge prices its cached part.
    let cache = if charge.estimated { CacheTokens::default() } else { summary.cache.within(charge.usage.input_tokens) };
    let cost_micros = active.policy.cost_micros(summary.model.as_str(), charge.usage, cache);
    worker.metrics.add(Counter::CostMicros, cost_micros);
    let settlement = a.settlement(status, &summary, charge.usage, end, cost_micros);
    let now_ms = host::now_ms();
    match c.state.update(&worker.keys, &a.limits, now_ms, |s| admission::settle(s, &a.limits, settlement, now_ms)) {
        Ok(Some(u)) => report::update(worker, u.info, &u.result, &a.tenant, a.scope.as_deref()),
        Ok(None) => log::debug!("the state of '{}' went before its request settled", c.state.name),
        Err(e) => report::store_failed(worker, e),
    }
    super::scopes::settle(worker, &a.tenant, &c.scopes, &settlement, end, now_ms);
    let run_id = c.run.as_ref().map(|r| r.run_id.as_str());
    let whose = UsageOf { tenant: &a.tenant, route: &a.route, run_id, status, scopes: &c.memberships };
    worker.reporter.push(Event::usage(&whose, summary.model.as_str(), charge.usage, cache, now_ms), now_ms);
    let Some(run) = &c.run else { return };
    // A long step's tokens must reach the fleet even if the run went quiet meanwhile.
    worker.fleet_keys.touch(&run.root, now_ms);
    match runs::settle(&worker.keys, run, &a.limits, settlement.tokens, now_ms) {
        Ok(Some(trip)) => {
            worker.metrics.inc(Counter::RunTrips);
            worker.reporter.push(Event::run_trip(&a.tenant, &run.run_id, &trip, now_ms), now_ms);
            log::info!(
                "tenant '{}' run '{}' tripped: {} {} > {}",
                a.tenant,
                run.run_id,
                trip.limit.as_str(),
                trip.observed,
                trip.threshold
            );
        }
        Ok(None) => {}
        Err(e) => report::store_failed(worker, e),
    }
}

/// Records in metrics what a response body said.
fn record_metrics(worker: &Worker, summary: &Summary, status: Option<u16>, end: ProbeEnd, tenant: &str) {
    let m = &worker.metrics;
    m.add(Counter::ToolCalls, u64::from(summary.tool_calls));
    m.add(Counter::UsageAnomalies, u64::from(summary.anomalies.total()));
    if summary.error {
        m.inc(Counter::UpstreamErrorEvents);
    }
    if summary.malformed && end == ProbeEnd::Completed {
        m.inc(Counter::UsageMalformed);
        log::warn!("response for tenant '{tenant}' is not well-formed; counted what was readable");
    }
    if summary.usage.is_none() && status.is_some_and(|s| (200..300).contains(&s)) && !summary.malformed {
        m.inc(Counter::UsageMissing);
    }
}
