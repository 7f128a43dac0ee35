//! Budget top-ups across policy writes: a top-up is an operator's act at run time (like a
//! breaker hold), not configuration, so a policy or tenant entry written from a file keeps the
//! top-ups of the current period, and lapsed ones are forgotten on the next top-up.

use crate::db;
use fusebox_engine::budget::Budget;
use fusebox_engine::policy::{period_label, Limits, Policy, TenantPolicy, TopUps};

/// Forgets the top-ups whose period is over (they no longer raise anything).
pub(crate) fn drop_lapsed(topups: &mut TopUps, now_s: u64) {
    for budget in [Budget::TokensDay, Budget::CostMonth] {
        if topups.get(budget).is_some_and(|t| t.period != period_label(budget, now_s)) {
            topups.clear(budget);
        }
    }
}

/// The top-ups in `topups` still usable under `limits`: of the current period, for a budget
/// the limits have; `None` when none is.
fn still_usable(mut topups: TopUps, limits: &Limits, now_s: u64) -> Option<TopUps> {
    drop_lapsed(&mut topups, now_s);
    for budget in [Budget::TokensDay, Budget::CostMonth].into_iter().filter(|b| !limits.has_budget(*b)) {
        topups.clear(budget);
    }
    (topups != TopUps::default()).then_some(topups)
}

/// Top-ups of the current period that `old` held, put back on `p`'s entries where an
/// operator's write would otherwise drop them (a top-up is a run-time act, like a hold, not
/// configuration); one whose budget the new policy no longer has is left out.
pub(crate) fn carry(p: &mut Policy, old: Vec<(String, TopUps)>) {
    let now_s = db::now_ms() / 1000;
    for (tenant, topups) in old {
        let Some(topups) = still_usable(topups, &p.limits_for(&tenant, None).1, now_s) else { continue };
        let entry = p.tenants.entry(tenant).or_default();
        if entry.topup.is_none() {
            entry.topup = Some(topups);
        }
    }
}

/// The top-ups of scope values `p` holds: (scope, value, top-ups).
pub(crate) fn of_scopes(p: &Policy) -> Vec<(String, String, TopUps)> {
    p.scopes
        .iter()
        .flat_map(|(s, d)| d.values.iter().filter_map(move |(v, e)| Some((s.clone(), v.clone(), e.topup.clone()?))))
        .collect()
}

/// [`carry`] for scope values: kept while the new policy still has the scope and the budget.
pub(crate) fn carry_scopes(p: &mut Policy, old: Vec<(String, String, TopUps)>) {
    let now_s = db::now_ms() / 1000;
    for (scope, value, topups) in old {
        let Some(def) = p.scopes.get_mut(&scope) else { continue };
        let Some(topups) = still_usable(topups, &def.limits_for(&value), now_s) else { continue };
        let entry = def.values.entry(value).or_default();
        if entry.topup.is_none() {
            entry.topup = Some(topups);
        }
    }
}

/// The top-ups `p` holds, by tenant.
pub(crate) fn of<'a>(entries: impl Iterator<Item = (&'a String, &'a TenantPolicy)>) -> Vec<(String, TopUps)> {
    entries.filter_map(|(t, e)| Some((t.clone(), e.topup.clone()?))).collect()
}
