//! `GET /v1/tenants/{t}/series?minutes=N`: a tenant's usage minute by minute over the last N
//! minutes (tokens and requests, zeros where it sent nothing), its `tokens_60s` limit to draw
//! against, and its denials by reason, for the dashboard's chart.

use crate::db::{from_sql, saturating_sum, to_sql, DbError, Sql};
use crate::error::ApiError;
use crate::params;
use fusebox_engine::budget::Budget;
use fusebox_engine::policy::{period_label, Policy};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The longest series asked for: a day of minutes.
pub const MAX_MINUTES: u64 = 1440;

pub fn series(conn: &dyn Sql, policy: &Policy, tenant: &str, now_ms: u64, minutes: u64) -> Result<Value, ApiError> {
    let minutes = minutes.clamp(1, MAX_MINUTES);
    let last = now_ms / 1000 / 60 * 60;
    let first = last.saturating_sub((minutes - 1) * 60);
    let sum = |c: &str| saturating_sum(conn.dialect(), c);
    let sql = format!(
        "SELECT minute, {}, {} FROM usage WHERE tenant = ?1 AND minute >= ?2 AND minute <= ?3 GROUP BY minute",
        sum("input_tokens + output_tokens"),
        sum("requests")
    );
    let rows: HashMap<u64, (u64, u64)> = conn
        .query_map(&sql, params![tenant, to_sql(first), to_sql(last)], |r| {
            Ok((from_sql(r.get(0)?), (from_sql(r.get(1)?), from_sql(r.get(2)?))))
        })?
        .into_iter()
        .collect();
    let points: Vec<Value> = (0..minutes)
        .map(|i| {
            let minute = first + i * 60;
            let (tokens, requests) = rows.get(&minute).copied().unwrap_or_default();
            json!({"minute": minute, "tokens": tokens, "requests": requests})
        })
        .collect();
    // `table` is one of our own constants, never input.
    let by_reason = |table: &str| -> Result<serde_json::Map<String, Value>, DbError> {
        let sql = format!("SELECT reason, count FROM {table} WHERE tenant = ?1 ORDER BY reason");
        let rows =
            conn.query_map(&sql, params![tenant], |r| Ok((r.get::<String>(0)?, Value::from(from_sql(r.get(1)?)))))?;
        Ok(rows.into_iter().collect())
    };
    let (_, limits) = policy.limits_for(tenant, None);
    // Each budget's limit now (with a top-up of this period) and the top-up, for the dashboard.
    let topups = policy.tenants.get(tenant).and_then(|e| e.topup.clone()).unwrap_or_default();
    let now_s = crate::db::now_ms() / 1000;
    let budgets: serde_json::Map<String, Value> = [Budget::TokensDay, Budget::CostMonth]
        .into_iter()
        .filter_map(|b| {
            let limit = limits.budget_limit(b, now_s)?;
            let limit = if b == Budget::CostMonth { json!(limit as f64 / 1e6) } else { json!(limit) };
            let topup = topups.get(b).filter(|t| t.period == period_label(b, now_s));
            Some((b.as_str().to_string(), json!({"limit": limit, "topup": topup})))
        })
        .collect();
    Ok(json!({
        "tenant": tenant,
        "minutes": points,
        "budgets": budgets,
        "tokens_60s_limit": limits.tokens_60s,
        "denials": by_reason("tenant_denials")?,
        "shadow_denials": by_reason("tenant_shadow_denials")?,
    }))
}
