//! The operator dashboard: one page (`GET /dashboard`, static HTML and script, no build step)
//! and the one document it shows (`GET /v1/dashboard`): every tenant with its tier, breaker,
//! operator hold and usage against the thresholds control can judge, plus recent trips and
//! audit entries.

use crate::audit;
use crate::db::{from_sql, saturating_sum, to_sql, DbError, Sql};
use crate::error::ApiError;
use crate::ingest::Escalation;
use crate::params;
use crate::report::{breaker_states, event_row, known_tenants, reported_breaker, totals};
use fusebox_engine::budget::{civil_date, days_from_civil};
use fusebox_engine::policy::{Forced, Policy};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The page itself: plain HTML with an inline script that reads `/v1/dashboard`.
pub const PAGE: &str = include_str!("dashboard.html");

/// Tenants a page shows unless asked for fewer.
const MAX_TENANTS: usize = 200;
const RECENT: u64 = 20;

/// Unix seconds of 00:00 UTC today and of the 1st of this month.
fn period_starts(now_s: u64) -> (u64, u64) {
    let days = (now_s / 86_400) as i64;
    let (y, m, _) = civil_date(days);
    let month_start = days_from_civil(y, m, 1).max(0) as u64 * 86_400;
    (now_s - now_s % 86_400, month_start)
}

/// What the dashboard shows of a tenant's usage, from minutes starting at or after each bound.
struct Usage {
    tokens_recent: u64,
    requests_recent: u64,
    tokens_day: u64,
    cost_month_micros: u64,
}

/// One pass over the tenant's usage rows for the three periods the dashboard shows.
fn usage(conn: &dyn Sql, tenant: &str, recent_s: u64, day_s: u64, month_s: u64) -> Result<Usage, DbError> {
    let from = recent_s.min(day_s).min(month_s);
    let sum = |c: &str| saturating_sum(conn.dialect(), c);
    let sql = format!(
        "SELECT {}, {}, {}, {} FROM usage WHERE tenant = ?1 AND minute >= ?5",
        sum("CASE WHEN minute >= ?2 THEN input_tokens + output_tokens END"),
        sum("CASE WHEN minute >= ?2 THEN requests END"),
        sum("CASE WHEN minute >= ?3 THEN input_tokens + output_tokens END"),
        sum("CASE WHEN minute >= ?4 THEN cost_micros END")
    );
    conn.query_one(&sql, params![tenant, to_sql(recent_s), to_sql(day_s), to_sql(month_s), to_sql(from)], |r| {
        Ok(Usage {
            tokens_recent: from_sql(r.get(0)?),
            requests_recent: from_sql(r.get(1)?),
            tokens_day: from_sql(r.get(2)?),
            cost_month_micros: from_sql(r.get(3)?),
        })
    })
}

/// One usage line: what was used against its limit (`null` when the tier sets none).
fn gauge(name: &str, used: Value, limit: Option<Value>, note: &str) -> Value {
    json!({"name": name, "used": used, "limit": limit, "note": note})
}

/// Which tenants a dashboard request shows: a page of those whose name contains `search`,
/// in `sort` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
    /// A part of the tenant's name (case-insensitive).
    pub search: Option<String>,
    pub sort: Sort,
}

/// The most tenants one page shows.
pub const MAX_PAGE: usize = 500;

impl Default for Page {
    fn default() -> Page {
        Page { offset: 0, limit: MAX_TENANTS, search: None, sort: Sort::Attention }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Open, held or escalated first, then by tokens today.
    Attention,
    /// By tokens today, most first.
    Tokens,
    /// By name.
    Tenant,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "attention" => Some(Sort::Attention),
            "tokens" => Some(Sort::Tokens),
            "tenant" => Some(Sort::Tenant),
            _ => None,
        }
    }
}

/// What ranking needs of every tenant, read for all of them in a few set queries (a query per
/// tenant took 13-16 s at 100 000 tenants).
struct Line<'a> {
    tenant: &'a str,
    state: &'static str,
    escalated: bool,
    tokens_day: u64,
}

fn state_of(forced: Option<Forced>, reported: Option<&str>) -> &'static str {
    match (forced, reported) {
        (Some(Forced::Open), _) => "kill_switch",
        (Some(_), _) => "held_closed",
        (None, Some("open")) => "open",
        (None, Some("half_open")) => "half_open",
        (None, _) => "closed",
    }
}

/// `GET /v1/dashboard`: one page of tenants with everything the page shows of them, how many
/// tenants there are and match, how many are in each state, and recent trips and audit entries.
pub fn view(conn: &dyn Sql, policy: &Policy, now_ms: u64, esc: Escalation, page: &Page) -> Result<Value, ApiError> {
    let now_s = now_ms / 1000;
    let (day_start, month_start) = period_starts(now_s);
    // The current minute and the one before it: control sees usage by the minute.
    let recent_start = (now_s / 60).saturating_sub(1) * 60;
    let names = known_tenants(conn, policy)?;
    let reported = breaker_states(conn)?;
    let tokens_sql = format!(
        "SELECT tenant, {} FROM usage WHERE minute >= ?1 GROUP BY tenant",
        saturating_sum(conn.dialect(), "input_tokens + output_tokens")
    );
    let tokens_day: HashMap<String, u64> = conn
        .query_map(&tokens_sql, params![to_sql(day_start)], |r| Ok((r.get(0)?, from_sql(r.get(1)?))))?
        .into_iter()
        .collect();
    let since = to_sql(now_ms.saturating_sub(esc.window_s.saturating_mul(1000)));
    let escalated: HashSet<String> = conn
        .query_map(
            "SELECT DISTINCT tenant FROM tenant_events WHERE kind = 'escalation' AND at_ms > ?1",
            params![since],
            |r| r.get::<String>(0),
        )?
        .into_iter()
        .collect();
    let lines: Vec<Line<'_>> = names
        .iter()
        .map(|t| Line {
            tenant: t,
            state: state_of(
                policy.tenants.get(t).and_then(|e| e.forced.as_ref()).map(|f| f.state),
                reported.get(t).map(String::as_str),
            ),
            escalated: escalated.contains(t),
            tokens_day: tokens_day.get(t).copied().unwrap_or(0),
        })
        .collect();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for l in &lines {
        *counts.entry(l.state).or_default() += 1;
    }
    let needle = page.search.as_deref().map(str::to_ascii_lowercase).filter(|n| !n.is_empty());
    let mut matched: Vec<&Line<'_>> =
        lines.iter().filter(|l| needle.as_deref().is_none_or(|n| l.tenant.to_ascii_lowercase().contains(n))).collect();
    match page.sort {
        Sort::Attention => matched.sort_by_key(|l| {
            let urgent = matches!(l.state, "kill_switch" | "open" | "half_open") || l.escalated;
            (!urgent, std::cmp::Reverse(l.tokens_day), l.tenant)
        }),
        Sort::Tokens => matched.sort_by_key(|l| (std::cmp::Reverse(l.tokens_day), l.tenant)),
        Sort::Tenant => matched.sort_by_key(|l| l.tenant),
    }
    let shown: Vec<&Line<'_>> = matched.iter().skip(page.offset).take(page.limit.min(MAX_PAGE)).copied().collect();
    let mut tenants = Vec::with_capacity(shown.len());
    for l in shown {
        let t = l.tenant;
        let (tier, limits) = policy.limits_for(t, None);
        let forced = policy.tenants.get(t).and_then(|e| e.forced.as_ref());
        let u = usage(conn, t, recent_start, day_start, month_start)?;
        tenants.push(json!({
            "tenant": t,
            "tier": tier,
            "state": l.state,
            "forced": forced,
            "breaker": reported_breaker(conn, t)?,
            "escalated": l.escalated,
            "totals": totals(conn, t)?,
            "usage": [
                gauge("tokens_60s", u.tokens_recent.into(), limits.tokens_60s.map(Value::from),
                      "tokens in this minute and the last (control sees usage by the minute)"),
                gauge("requests", u.requests_recent.into(), None, "requests in this minute and the last"),
                gauge("budget_tokens_day", u.tokens_day.into(), limits.budget_tokens_day.map(Value::from),
                      "tokens since 00:00 UTC"),
                gauge("budget_cost_month", (u.cost_month_micros as f64 / 1e6).into(), limits.budget_cost_month.map(Value::from),
                      "cost since the 1st, from the policy's prices"),
            ],
        }));
    }
    let trips = conn.query_map(
        "SELECT tenant, at_ms, details FROM tenant_events WHERE kind = 'trip' ORDER BY at_ms DESC, id DESC LIMIT ?1",
        params![to_sql(RECENT)],
        |r| event_row(r, "tenant"),
    )?;
    let mut audit_entries = audit::list(conn, None, RECENT)?;
    audit_entries.reverse();
    Ok(json!({
        "generated_at_ms": now_ms,
        "policy_version": policy.version,
        // The policy's scopes (org, team, ...): the page groups today's usage by one of them.
        "scopes": policy.scopes.keys().collect::<Vec<_>>(),
        "total": lines.len(),
        "matched": matched.len(),
        "offset": page.offset,
        "states": counts,
        "escalated": escalated.iter().filter(|t| names.contains(*t)).count(),
        "tenants": tenants,
        "tenants_not_shown": matched.len().saturating_sub(tenants.len()),
        "recent_trips": trips,
        "recent_audit": audit_entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_at_midnight_and_on_the_first() {
        // 2026-11-23T14:05:00Z
        let now = 1_795_442_700;
        let (day, month) = period_starts(now);
        assert_eq!(day, 1_795_392_000, "2026-11-23T00:00:00Z");
        assert_eq!(month, 1_793_491_200, "2026-11-01T00:00:00Z");
    }
}
