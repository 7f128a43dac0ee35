//! The operator dashboard: one page (`GET /dashboard`, static HTML and script, no build step)
//! and the one document it shows (`GET /v1/dashboard`): every tenant with its tier, breaker,
//! operator hold and usage against the thresholds control can judge, plus recent trips and
//! audit entries.

use crate::audit;
use crate::db::{from_sql, saturating_sum, to_sql, DbError, Sql};
use crate::error::ApiError;
use crate::ingest::Escalation;
use crate::params;
use crate::report::{escalated, event_row, known_tenants, reported_breaker, totals};
use fusebox_engine::budget::{civil_date, days_from_civil};
use fusebox_engine::policy::{Forced, Policy};
use serde_json::{json, Value};

/// The page itself: plain HTML with an inline script that reads `/v1/dashboard`.
pub const PAGE: &str = include_str!("dashboard.html");

/// Tenants shown (the ones that need attention first); the rest are counted.
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

/// `GET /v1/dashboard`.
pub fn view(conn: &dyn Sql, policy: &Policy, now_ms: u64, esc: Escalation) -> Result<Value, ApiError> {
    let now_s = now_ms / 1000;
    let (day_start, month_start) = period_starts(now_s);
    // The current minute and the one before it: control sees usage by the minute.
    let recent_start = (now_s / 60).saturating_sub(1) * 60;
    let names = known_tenants(conn, policy)?;
    let mut tenants = Vec::with_capacity(names.len().min(MAX_TENANTS));
    for t in &names {
        let (tier, limits) = policy.limits_for(t, None);
        let forced = policy.tenants.get(t).and_then(|e| e.forced.as_ref());
        let breaker = reported_breaker(conn, t)?;
        let u = usage(conn, t, recent_start, day_start, month_start)?;
        let state = match (forced, &breaker) {
            (Some(f), _) if matches!(f.state, Forced::Open) => "kill_switch".to_string(),
            (Some(_), _) => "held_closed".to_string(),
            (None, Some(b)) => b.state.clone(),
            (None, None) => "closed".to_string(),
        };
        tenants.push(json!({
            "tenant": t,
            "tier": tier,
            "state": state,
            "forced": forced,
            "breaker": breaker,
            "escalated": escalated(conn, t, now_ms, esc)?,
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
    // Attention first: held or open breakers, escalations, then by tokens today.
    let rank = |v: &Value| {
        let state = v.get("state").and_then(Value::as_str).unwrap_or("");
        let urgent =
            matches!(state, "kill_switch" | "open" | "half_open") || v.get("escalated") == Some(&Value::Bool(true));
        let tokens = v.pointer("/usage/2/used").and_then(Value::as_u64).unwrap_or(0);
        (!urgent, std::cmp::Reverse(tokens))
    };
    tenants.sort_by_key(rank);
    let hidden = tenants.len().saturating_sub(MAX_TENANTS);
    tenants.truncate(MAX_TENANTS);
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
        "tenants": tenants,
        "tenants_not_shown": hidden,
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
