//! What an update of a tenant's state did, told to metrics, logs and control.

use super::Worker;
use crate::metrics::Counter;
use crate::store::{StoreError, UpdateInfo};
use fusebox_engine::breaker::{Phase, Transition};
use fusebox_engine::event::Event;

pub fn store_failed(worker: &Worker, e: StoreError) {
    worker.metrics.inc(Counter::StoreErrors);
    log::warn!("shared-data update failed ({e:?}); request not counted");
}

/// Counts and reports an update's transitions; `scope` names the route tier whose breaker it
/// was (`None`: the tenant's own).
pub fn update(worker: &Worker, info: UpdateInfo, transitions: &[Transition], tenant: &str, scope: Option<&str>) {
    if info.corrupt {
        worker.metrics.inc(Counter::StoreCorrupt);
        log::warn!("state of tenant '{tenant}' was unreadable and was reset");
    }
    for t in transitions {
        worker.metrics.inc(Counter::BreakerTransitions);
        worker.reporter.push(Event::transition(tenant, scope, t), t.at_ms);
        let whose = match scope {
            // A scope's label is `org:initech`; a route tier's name has no colon.
            Some(s) if s.contains(':') => format!("scope {s} (request of tenant '{tenant}')"),
            Some(s) => format!("tenant '{tenant}' route tier '{s}'"),
            None => format!("tenant '{tenant}'"),
        };
        match (t.to, t.trip, t.open_until_ms) {
            (Phase::Open, Some(trip), Some(until)) => {
                worker.metrics.inc(Counter::BreakerTrips);
                log::info!(
                    "{whose} breaker {} -> open: {} {} > {}, open for {}s",
                    t.from.as_str(),
                    trip.metric,
                    trip.observed,
                    trip.threshold,
                    until.saturating_sub(t.at_ms).div_ceil(1000)
                );
            }
            _ => log::info!("{whose} breaker {} -> {}", t.from.as_str(), t.to.as_str()),
        }
    }
}
