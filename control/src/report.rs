//! Read-side views: one tenant, all tenants, usage over a time range (Prometheus metrics are
//! in `prometheus.rs`).

use crate::db::{from_sql, saturating_sum, to_sql, DbError, Dialect, Row, Sql};
use crate::error::ApiError;
use crate::ingest::Escalation;
use crate::params;
use fusebox_engine::policy::Policy;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) fn cost(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The breaker state a filter last reported for a tenant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportedBreaker {
    pub state: String,
    pub at_ms: u64,
    pub metric: Option<String>,
    pub threshold: Option<u64>,
    pub observed: Option<u64>,
    pub open_until_ms: Option<u64>,
    pub source: String,
}

/// A reported state as it stands now: an `open` whose cooldown has passed is `half_open` (the
/// next request is a probe), whether or not a request has come since to report it.
pub(crate) fn state_now(dialect: Dialect) -> String {
    let now_ms = match dialect {
        Dialect::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER) * 1000",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) * 1000",
    };
    format!(
        "CASE WHEN state = 'open' AND open_until_ms IS NOT NULL AND open_until_ms <= {now_ms} THEN 'half_open' ELSE state END"
    )
}

pub(crate) fn reported_breaker(conn: &dyn Sql, tenant: &str) -> Result<Option<ReportedBreaker>, DbError> {
    conn.query_opt(
        &format!(
            "SELECT {}, at_ms, metric, threshold, observed, open_until_ms, source FROM breaker_state WHERE tenant = ?1",
            state_now(conn.dialect())
        ),
        params![tenant],
        |r| {
            Ok(ReportedBreaker {
                state: r.get(0)?,
                at_ms: from_sql(r.get(1)?),
                metric: r.get(2)?,
                threshold: r.get::<Option<i64>>(3)?.map(from_sql),
                observed: r.get::<Option<i64>>(4)?.map(from_sql),
                open_until_ms: r.get::<Option<i64>>(5)?.map(from_sql),
                source: r.get(6)?,
            })
        },
    )
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
    pub denials: u64,
    pub trips: u64,
    pub warnings: u64,
}

const TOTALS: &str = "requests, input_tokens, output_tokens, cost_micros, denials, trips, warnings";

/// The totals in a row's columns `at..at + 7`, in the order of `TOTALS`.
pub(crate) fn totals_row(r: &Row, at: usize) -> Result<Totals, DbError> {
    let input = from_sql(r.get(at + 1)?);
    let output = from_sql(r.get(at + 2)?);
    Ok(Totals {
        requests: from_sql(r.get(at)?),
        input_tokens: input,
        output_tokens: output,
        total_tokens: input.saturating_add(output),
        cost: cost(from_sql(r.get(at + 3)?)),
        denials: from_sql(r.get(at + 4)?),
        trips: from_sql(r.get(at + 5)?),
        warnings: from_sql(r.get(at + 6)?),
    })
}

pub(crate) fn totals(conn: &dyn Sql, tenant: &str) -> Result<Totals, DbError> {
    conn.query_opt(&format!("SELECT {TOTALS} FROM tenant_totals WHERE tenant = ?1"), params![tenant], |r| {
        totals_row(r, 0)
    })
    .map(Option::unwrap_or_default)
}

pub(crate) fn escalated(conn: &dyn Sql, tenant: &str, now_ms: u64, esc: Escalation) -> Result<bool, DbError> {
    let since = to_sql(now_ms.saturating_sub(esc.window_s.saturating_mul(1000)));
    conn.query_one(
        "SELECT COUNT(*) FROM tenant_events WHERE tenant = ?1 AND kind = 'escalation' AND at_ms > ?2",
        params![tenant, since],
        |r| Ok(r.get::<i64>(0)? > 0),
    )
}

/// `GET /v1/tenants/{t}`: policy entry, effective limits, operator hold, last reported
/// breaker state, totals and recent warnings, trips and escalations.
pub fn tenant(conn: &dyn Sql, policy: &Policy, tenant: &str, now_ms: u64, esc: Escalation) -> Result<Value, ApiError> {
    let entry = policy.tenants.get(tenant);
    let (tier, limits) = policy.limits_for(tenant, None);
    let events = conn.query_map(
        "SELECT kind, at_ms, details FROM tenant_events WHERE tenant = ?1 ORDER BY at_ms DESC, id DESC LIMIT 20",
        params![tenant],
        |r| event_row(r, "kind"),
    )?;
    Ok(json!({
        "tenant": tenant,
        "policy_version": policy.version,
        "tier": tier,
        "entry": entry,
        "limits": limits,
        "forced": entry.and_then(|e| e.forced.as_ref()),
        "breaker": reported_breaker(conn, tenant)?,
        "totals": totals(conn, tenant)?,
        "escalated": escalated(conn, tenant, now_ms, esc)?,
        "events": events,
    }))
}

/// A `tenant_events` row `(<first>, at_ms, details)` as JSON, `first` naming its first column.
pub(crate) fn event_row(r: &Row, first: &str) -> Result<Value, DbError> {
    let details: String = r.get(2)?;
    let mut row = serde_json::Map::new();
    row.insert(first.to_string(), Value::String(r.get(0)?));
    row.insert("at_ms".into(), from_sql(r.get(1)?).into());
    row.insert("details".into(), serde_json::from_str::<Value>(&details).unwrap_or(Value::Null));
    Ok(Value::Object(row))
}

/// Every tenant with a policy entry or reported traffic.
pub(crate) fn known_tenants(conn: &dyn Sql, policy: &Policy) -> Result<BTreeSet<String>, DbError> {
    let mut names: BTreeSet<String> = policy.tenants.keys().cloned().collect();
    let sql = "SELECT tenant FROM tenant_totals UNION SELECT tenant FROM breaker_state";
    names.extend(conn.query_map(sql, params![], |r| r.get::<String>(0))?);
    Ok(names)
}

/// Every tenant's reported breaker state as it stands now, in one query.
pub(crate) fn breaker_states(conn: &dyn Sql) -> Result<HashMap<String, String>, DbError> {
    let sql = format!("SELECT tenant, {} FROM breaker_state", state_now(conn.dialect()));
    Ok(conn.query_map(&sql, params![], |r| Ok((r.get(0)?, r.get(1)?)))?.into_iter().collect())
}

/// `GET /v1/tenants`: every tenant with a policy entry or reported traffic, read in three set
/// queries whatever the number of tenants.
pub fn tenants(conn: &dyn Sql, policy: &Policy) -> Result<Value, ApiError> {
    let mut totals: HashMap<String, Totals> = conn
        .query_map(&format!("SELECT tenant, {TOTALS} FROM tenant_totals"), params![], |r| {
            Ok((r.get::<String>(0)?, totals_row(r, 1)?))
        })?
        .into_iter()
        .collect();
    let mut breakers = breaker_states(conn)?;
    let list: Vec<Value> = known_tenants(conn, policy)?
        .into_iter()
        .map(|t| {
            let (tier, _) = policy.limits_for(&t, None);
            let entry = policy.tenants.get(&t);
            json!({
                "tier": tier,
                "forced": entry.and_then(|e| e.forced.as_ref()).map(|f| f.state),
                "breaker": breakers.remove(&t),
                "totals": totals.remove(&t).unwrap_or_default(),
                "tenant": t,
            })
        })
        .collect();
    Ok(json!({ "tenants": list }))
}

#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub tenant: Option<String>,
    pub model: Option<String>,
    /// Unix seconds, inclusive.
    pub from_s: u64,
    /// Unix seconds, exclusive.
    pub to_s: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UsageLine {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
    #[serde(skip)]
    cost_micros: u64,
}

impl UsageLine {
    fn add(&mut self, requests: u64, input: u64, output: u64, cost_micros: u64) {
        self.requests += requests;
        self.input_tokens += input;
        self.output_tokens += output;
        self.total_tokens += input + output;
        self.cost_micros += cost_micros;
        self.cost = cost(self.cost_micros);
    }
}

/// `GET /v1/usage`: per tenant, totals and a line per model. Usage is recorded per minute,
/// so `from`/`to` select whole minutes (a minute counts if it starts in the range). Sums
/// saturate rather than fail (`TOTAL` is a float, exact below 2^53 tokens), so no stored value
/// can make this answer an error.
pub fn usage(conn: &dyn Sql, q: &UsageQuery) -> Result<Value, ApiError> {
    let sum = |c: &str| saturating_sum(conn.dialect(), c);
    let sql = format!(
        "SELECT tenant, model, {}, {}, {}, {} FROM usage
         WHERE minute >= ?1 AND minute < ?2 AND (CAST(?3 AS TEXT) IS NULL OR tenant = ?3) AND (CAST(?4 AS TEXT) IS NULL OR model = ?4)
         GROUP BY tenant, model ORDER BY tenant, model",
        sum("requests"),
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cost_micros")
    );
    let rows = conn.query_map(&sql, params![to_sql(q.from_s), to_sql(q.to_s), q.tenant, q.model], usage_row)?;
    Ok(json!({
        "from": crate::timefmt::format_ms(q.from_s * 1000),
        "to": crate::timefmt::format_ms(q.to_s * 1000),
        "tenants": grouped(rows, "tenant"),
    }))
}

/// Usage per value of `scope` (org, team, ...) and model over the query's time range (its
/// `model` filter applies; its `tenant` does not: a scope spans tenants).
pub fn scope_usage(conn: &dyn Sql, scope: &str, q: &UsageQuery) -> Result<Value, ApiError> {
    let sum = |c: &str| saturating_sum(conn.dialect(), c);
    let sql = format!(
        "SELECT value, model, {}, {}, {}, {} FROM scope_usage
         WHERE scope = ?1 AND minute >= ?2 AND minute < ?3 AND (CAST(?4 AS TEXT) IS NULL OR model = ?4)
         GROUP BY value, model ORDER BY value, model",
        sum("requests"),
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cost_micros")
    );
    let rows = conn.query_map(&sql, params![scope, to_sql(q.from_s), to_sql(q.to_s), q.model], usage_row)?;
    Ok(json!({
        "from": crate::timefmt::format_ms(q.from_s * 1000),
        "to": crate::timefmt::format_ms(q.to_s * 1000),
        "scope": scope,
        "values": grouped(rows, "value"),
    }))
}

type UsageRow = (String, String, u64, u64, u64, u64);

/// (who, model, requests, input, output, cost micros) from a grouped usage query.
fn usage_row(r: &Row) -> Result<UsageRow, DbError> {
    Ok((
        r.get::<String>(0)?,
        r.get::<String>(1)?,
        from_sql(r.get(2)?),
        from_sql(r.get(3)?),
        from_sql(r.get(4)?),
        from_sql(r.get(5)?),
    ))
}

/// Rows by who (a tenant, a scope value), each with its total and its models, named `key`.
fn grouped(rows: Vec<UsageRow>, key: &str) -> Vec<Value> {
    let mut by_who: BTreeMap<String, (UsageLine, BTreeMap<String, UsageLine>)> = BTreeMap::new();
    for (who, model, requests, input, output, micros) in rows {
        let (total, models) = by_who.entry(who).or_default();
        total.add(requests, input, output, micros);
        models.entry(model).or_default().add(requests, input, output, micros);
    }
    by_who
        .into_iter()
        .map(|(who, (total, models))| {
            let models: Vec<Value> =
                models.into_iter().map(|(model, line)| json!({"model": model, "usage": line})).collect();
            json!({key: who, "usage": total, "models": models})
        })
        .collect()
}
