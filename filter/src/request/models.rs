//! Per-model limits: once the request body names its model, the tenant's limits for the
//! matching pattern (`gpt-4o*`) judge it in a state of their own (`tenant#model:gpt-4o*`),
//! which then settles with the request like a scope's.

use super::lifecycle::Counting;
use super::scopes::{self, Judged, Refused};
use super::Worker;
use fusebox_engine::policy::Limit;

/// The state of `tenant`'s requests to models matching `pattern` (`#` cannot occur in a
/// tenant id, and a route tier's name has no `:`).
fn state_name(tenant: &str, pattern: &str) -> String {
    format!("{tenant}#model:{pattern}")
}

/// Judges the request by the limits of its model, if its tenant has any for it; an admission
/// is held with the request's scopes (and settles with them). Returns the shadowed limit that
/// would have refused it, if one did.
pub fn admit(worker: &Worker, c: &mut Counting, now_ms: u64) -> Result<Option<Limit>, Refused> {
    let Some(model) = c.admitted.estimate.model() else { return Ok(None) };
    let Some((pattern, limits)) = c.admitted.limits.models.for_model(model) else { return Ok(None) };
    let label = format!("model:{pattern}");
    let name = state_name(&c.admitted.tenant, pattern);
    let (limits, shadow) = scopes::as_judged(worker, limits.clone());
    let reserve = c.admitted.in_flight.map_or(0, |f| f.reserved);
    let judged = Judged { tenant: &c.admitted.tenant, label, name, limits, shadow: shadow.as_deref() };
    match scopes::admit_one(worker, judged, reserve, now_ms) {
        Ok(Some(entered)) => {
            c.scopes.push(entered.held);
            Ok(entered.shadowed)
        }
        Ok(None) => Ok(None),
        Err(refused) => Err(refused),
    }
}
