//! Budget top-ups across policy writes: a top-up is an operator's act at run time (like a
//! breaker hold), not configuration, so a policy or tenant entry written from a file keeps the
//! top-ups of the current period, and lapsed ones are forgotten on the next top-up.

use crate::db;
use fusebox_engine::budget::Budget;
use fusebox_engine::policy::{period_label, Policy, TenantPolicy, TopUps};

/// Forgets the top-ups whose period is over (they no longer raise anything).
pub(crate) fn drop_lapsed(topups: &mut TopUps, now_s: u64) {
    for budget in [Budget::TokensDay, Budget::CostMonth] {
        let lapsed = topups.get(budget).is_some_and(|t| t.period != period_label(budget, now_s));
        if lapsed {
            match budget {
                Budget::TokensDay => topups.budget_tokens_day = None,
                Budget::CostMonth => topups.budget_cost_month = None,
            }
        }
    }
}

/// Top-ups of the current period that `old` held, put back on `p`'s entries where an
/// operator's write would otherwise drop them (a top-up is a run-time act, like a hold, not
/// configuration); one whose budget the new policy no longer has is left out.
pub(crate) fn carry(p: &mut Policy, old: Vec<(String, TopUps)>) {
    let now_s = db::now_ms() / 1000;
    for (tenant, mut topups) in old {
        drop_lapsed(&mut topups, now_s);
        let (_, limits) = p.limits_for(&tenant, None);
        if limits.budget_tokens_day.is_none() {
            topups.budget_tokens_day = None;
        }
        if limits.budget_cost_month.is_none() {
            topups.budget_cost_month = None;
        }
        if topups == TopUps::default() {
            continue;
        }
        let entry = p.tenants.entry(tenant).or_default();
        if entry.topup.is_none() {
            entry.topup = Some(topups);
        }
    }
}

/// The top-ups `p` holds, by tenant.
pub(crate) fn of<'a>(entries: impl Iterator<Item = (&'a String, &'a TenantPolicy)>) -> Vec<(String, TopUps)> {
    entries.filter_map(|(t, e)| Some((t.clone(), e.topup.clone()?))).collect()
}
